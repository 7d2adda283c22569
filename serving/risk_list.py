"""The weekly risk lists: per CSM a CSV and a self-contained HTML page, and a portfolio summary
(HTML, Markdown and CSV) for the CS leader.

HTML is rendered by jinja2 with autoescape on, so account names and reason text always render
as text. Plots are small inline SVG charts drawn here (no external files, no network, no GUI
backend), and the table sorts with a few lines of inline JavaScript.

What people open is made safe to open: CSV cells that a spreadsheet would run as a formula
(starting ``= + - @``, tab or CR) get a leading ``'``; Markdown text is backslash-escaped;
names and free text are cut to a readable length (the warehouse keeps them whole).

A run's lists are one folder, written whole or not at all: every file goes to a temporary
folder beside the target (mode 0700, files 0600), with a ``manifest.json`` that ties them to
the run (run date, models, row counts, SHA-256 of each file); the folder is then swapped into
place in one rename, so readers see the previous run's folder or this one, never a mix, and a
rerun leaves no stale file behind.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import SupportsFloat

import numpy as np
import pandas as pd
from markupsafe import Markup

from serving.config import TierConfig
from serving.faults import checkpoint
from serving.playbook import (
    RiskListConfig,
    band_bounds,
    band_edges,
    band_labels,
    next_steps,
    risk_band_index,
    risk_bands,
)
from serving.reasons import format_money, split_reasons
from serving.render import columns_svg, environment, horizontal_bars_svg
from serving.score import QUADRANTS, TIERS, Scored

UNASSIGNED = "unassigned"
HOLDOUT_COLUMN = "holdout"
"""Boolean column of ``Scored.predictions`` (set by the holdout step when there is one): True
keeps the account off every CSM list; the summary counts it as held out for measurement."""
CSV_COLUMNS = {
    "run_date": "run_date",
    "csm_owner": "csm_owner",
    "account_id": "account_id",
    "name": "account",
    "segment": "segment",
    "arr": "arr",
    "risk_band": "churn_risk",
    "churn_probability": "churn_probability",
    "churn_tier": "risk_tier",
    "arr_at_risk_range": "arr_at_risk_range",
    "arr_at_risk": "arr_at_risk",
    "renewal_date": "renewal_date",
    "days_to_renewal": "days_to_renewal",
    "last_csm_touch": "last_csm_touch",
    "days_since_last_csm_touch": "days_since_last_csm_touch",
    "champion_status": "champion_status",
    "health_color": "health_color",
    "health_score": "health_score",
    "levers": "why_at_risk",
    "context": "context",
    "helps": "what_helps",
    "next_step": "next_step",
    "green_churn": "green_churn",
    "green_churn_drivers": "green_churn_drivers",
    "expansion_quadrant": "expansion_quadrant",
    "expansion_probability": "expansion_probability",
    "expected_expansion_arr": "expected_expansion_arr",
    "change": "change_since_last_run",
    "risk_change": "risk_change_points",
}
NAME_CHARS = 120
"""Names (account, CSM, segment) longer than this are cut, with an ellipsis, in lists."""
TEXT_CHARS = 1000
"""Longer free text (reasons, changes) is cut at this length."""
_DISPLAY_LIMITS = {
    "name": NAME_CHARS,
    "csm_owner": NAME_CHARS,
    "segment": NAME_CHARS,
    "health_color": NAME_CHARS,
    "top_reasons": TEXT_CHARS,
    "protective_factors": TEXT_CHARS,
    "levers": TEXT_CHARS,
    "context": TEXT_CHARS,
    "helps": TEXT_CHARS,
    "next_step": TEXT_CHARS,
    "green_churn_drivers": TEXT_CHARS,
    "change": TEXT_CHARS,
}
MANIFEST = "manifest.json"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class RiskListPaths:
    """Where one run's lists went."""

    out_dir: Path
    csm_csv: dict[str, Path] = field(default_factory=dict)
    csm_html: dict[str, Path] = field(default_factory=dict)
    summary_html: Path | None = None
    summary_md: Path | None = None
    summary_csv: Path | None = None
    movers_csv: Path | None = None

    def __str__(self) -> str:
        return f"{self.out_dir} ({len(self.csm_html)} CSM lists + summary)"


def write_risk_lists(
    scored: Scored,
    changes: pd.DataFrame,
    *,
    out_dir: Path,
    run_date: date,
    features: pd.DataFrame | None = None,
    options: ListOptions | None = None,
    previous: pd.DataFrame | None = None,
) -> RiskListPaths:
    """Write every CSM's CSV + HTML list (sorted by ARR at risk), the portfolio summary and
    ``manifest.json`` into a temporary folder, then swap it into ``out_dir`` whole.

    ``features`` (the scored feature frame) fills the working columns (renewal, last touch,
    champion); ``options`` the horizon, bands and playbook; ``previous`` (the last run's
    predictions) the change since then for every account, not only the movers. Accounts whose
    ``holdout`` is True in ``scored.predictions`` are kept off the CSM lists and only counted
    in the summary.

    An existing ``out_dir`` is replaced only if churnlens wrote it (its manifest, or only list
    file names); any other folder is refused rather than deleted."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    _make_private_dirs(out_dir.parent)
    _remove_leftovers(out_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        table = list_table(
            scored.predictions,
            changes,
            reasons=scored.reasons,
            features=features,
            options=options,
            run_date=run_date,
            previous=previous,
        )
        written = _write_all(table, changes, work, run_date, options or ListOptions())
        _write_file(work / MANIFEST, _manifest(scored, run_date, written))
        checkpoint("risk-lists:before-rename")
        _swap_into_place(work, out_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return _rebase(written.paths, out_dir)


@dataclass
class _Written:
    paths: RiskListPaths
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (rows, sha256)


def _write_all(
    table: pd.DataFrame, changes: pd.DataFrame, work: Path, run_date: date, options: ListOptions
) -> _Written:
    out = _Written(RiskListPaths(out_dir=work))
    paths = out.paths
    env = environment(_FILTERS)
    page = env.get_template("risk_list.html.j2")
    listed = table[~table["holdout"]].reset_index(drop=True)
    shown = for_people(listed)
    records = _records(shown)  # converted once; each page takes its rows by position
    positions = listed.groupby("csm_owner", sort=False).indices
    csv_rows = _csv(shown)
    legend = _legend(options)
    for owner, slug, rows in _by_owner(listed):
        mine = positions[owner]
        paths.csm_csv[owner] = _put(out, f"{slug}.csv", csv_text(csv_rows.iloc[mine]), len(mine))
        context = _page_context(owner, rows, [records[i] for i in mine], run_date, legend["bands"])
        html = page.render(**context, legend=legend, renewal_soon=options.config.renewal_soon_days)
        paths.csm_html[owner] = _put(out, f"{slug}.html", html, len(mine))
    checkpoint("risk-lists:half-written")
    held_out = set(table.loc[table["holdout"], "account_id"].astype(str))
    if held_out and len(changes):
        changes = changes[~changes["account_id"].astype(str).isin(held_out)]
    summary = portfolio_summary(table, changes)
    by_tier = for_people(summary["by_segment_tier"])
    paths.summary_csv = _put(out, "summary_arr_at_risk.csv", csv_text(by_tier), len(by_tier))
    movers = for_people(summary["movers"])
    paths.movers_csv = _put(out, "summary_movers.csv", csv_text(movers), len(movers))
    markdown = summary_markdown(summary, run_date, horizon_days=options.horizon_days)
    paths.summary_md = _put(out, "summary.md", markdown, len(table))
    context = _summary_context(summary, table, run_date, paths, legend["bands"])
    html = env.get_template("summary.html.j2").render(**context, legend=legend)
    paths.summary_html = _put(out, "summary.html", html, len(table))
    return out


def _legend(options: ListOptions) -> dict:
    """What the page header states: horizon, bands, tier thresholds."""
    return {
        "horizon_days": options.horizon_days,
        "bands": band_labels(options.edges),
        "medium": f"{options.tiers.medium:.0%}",
        "high": f"{options.tiers.high:.0%}",
    }


def _put(out: _Written, name: str, text: str, rows: int) -> Path:
    path = out.paths.out_dir / name
    out.files[name] = (rows, _write_file(path, text))
    return path


def _write_file(path: Path, text: str) -> str:
    """Create ``path`` readable by its owner only (0600), write ``text``; return its SHA-256."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()


def _manifest(scored: Scored, run_date: date, written: _Written) -> str:
    written_at = datetime.now(UTC).replace(tzinfo=None)  # the I/O edge: when lists were written
    return json.dumps(
        {
            "churnlens_risk_lists": 1,
            "run_date": run_date.isoformat(),
            "model_versions": dict(scored.model_refs),
            "feature_snapshot_id": scored.feature_snapshot_id,
            "accounts": len(scored.predictions),
            "written_at": written_at.isoformat(timespec="seconds"),
            "files": {
                name: {"rows": rows, "sha256": sha}
                for name, (rows, sha) in sorted(written.files.items())
            },
        },
        indent=2,
    )


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a list folder, after checking every file it names against its SHA-256
    (a ValueError names the first file that is missing or differs)."""
    manifest = json.loads((Path(out_dir) / MANIFEST).read_text())
    for name, entry in manifest["files"].items():
        path = Path(out_dir) / name
        if not path.is_file():
            raise ValueError(f"{path} is listed in {MANIFEST} but missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path} differs from what {MANIFEST} recorded (SHA-256)")
    return manifest


_OUR_FILES = re.compile(
    r"^(risk_list_.+\.(csv|html)|summary(_arr_at_risk|_movers)?\.(csv|md|html))$"
)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder churnlens did not write (a mistyped ``out_dir``)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"risk list folder {out_dir} exists and is not a folder")
    names = [p.name for p in out_dir.iterdir()]
    if MANIFEST in names or all(_OUR_FILES.match(n) for n in names):
        return
    foreign = sorted(n for n in names if not _OUR_FILES.match(n))
    raise ValueError(
        f"risk list folder {out_dir} holds files churnlens did not write ({foreign[:5]}); "
        "a run replaces its folder whole, so point the lists at a folder of their own"
    )


def _make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0700 (existing ones are left)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def _remove_leftovers(out_dir: Path) -> None:
    """Temporary folders of earlier writes of this folder whose process is gone (killed)."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        pid = stale.name.removeprefix(f".{out_dir.name}.tmp-").split("-")[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap_into_place(work: Path, out_dir: Path) -> None:
    """Make ``work`` the folder ``out_dir`` in one step. Linux exchanges the two names
    atomically (renameat2 RENAME_EXCHANGE), then the old folder (now at ``work``) is removed;
    elsewhere the old folder is moved aside first (a window of no folder, never a mix)."""
    if not out_dir.exists():
        os.rename(work, out_dir)
        return
    if _exchange(work, out_dir):
        checkpoint("risk-lists:after-rename")
        shutil.rmtree(work)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    os.rename(out_dir, aside / "old")
    os.rename(work, out_dir)
    checkpoint("risk-lists:after-rename")
    shutil.rmtree(aside)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _rebase(paths: RiskListPaths, out_dir: Path) -> RiskListPaths:
    def moved(path: Path | None) -> Path | None:
        return None if path is None else out_dir / path.name

    return RiskListPaths(
        out_dir=out_dir,
        csm_csv={k: out_dir / v.name for k, v in paths.csm_csv.items()},
        csm_html={k: out_dir / v.name for k, v in paths.csm_html.items()},
        summary_html=moved(paths.summary_html),
        summary_md=moved(paths.summary_md),
        summary_csv=moved(paths.summary_csv),
        movers_csv=moved(paths.movers_csv),
    )


# --- text people open ---------------------------------------------------------------------------


def clip(text: object, limit: int = NAME_CHARS) -> object:
    """``text`` cut to ``limit`` characters (the last one an ellipsis); non-text unchanged."""
    if isinstance(text, str) and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def for_people(frame: pd.DataFrame, limits: Mapping[str, int] = _DISPLAY_LIMITS) -> pd.DataFrame:
    """A copy with names and free text cut for display (lists only; the warehouse keeps the
    full text)."""
    out = frame.copy()
    for column, limit in limits.items():
        if column in out.columns and _is_text(out[column]):
            out[column] = out[column].map(lambda v, n=limit: clip(v, n))
    return out


def neutralise_formula(value: object) -> object:
    """A cell a spreadsheet would evaluate (``=``, ``+``, ``-``, ``@``, tab, CR first) gets a
    leading ``'`` so it shows as text (OWASP CSV injection); numbers are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV with every text cell neutralised against formula injection."""
    safe = frame.copy()
    for column in safe.columns:
        if _is_text(safe[column]):
            safe[column] = safe[column].map(neutralise_formula)
    buffer = io.StringIO()
    safe.to_csv(buffer, index=False)
    return buffer.getvalue()


# --- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListOptions:
    """What lists need besides the scores: the label horizon (days after ``as_of`` the risk
    covers), the tier thresholds the scores were tiered with, bands and the playbook."""

    horizon_days: int | None = None
    tiers: TierConfig = field(default_factory=TierConfig)
    config: RiskListConfig = field(default_factory=RiskListConfig)

    @property
    def edges(self) -> np.ndarray:
        return band_edges(self.config.risk_bands, self.tiers)


def list_table(
    predictions: pd.DataFrame,
    changes: pd.DataFrame,
    *,
    reasons: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    options: ListOptions | None = None,
    run_date: date | None = None,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predictions with the list's working columns, highest ARR at risk first: risk band and
    ARR-at-risk range, levers / context / what helps, next step, renewal, last CSM touch,
    champion status, this week's change, and ``holdout`` (False unless the frame says so)."""
    options = options or ListOptions()
    change = changes.set_index("account_id") if len(changes) else pd.DataFrame()
    ids = predictions["account_id"].astype(str)
    table = predictions.assign(
        change=ids.map(change["change"]) if len(change) else None,
        risk_change=_risk_change(predictions, change, previous),
        csm_owner=predictions["csm_owner"].fillna(UNASSIGNED),
        segment=predictions["segment"].fillna("unknown segment"),
        holdout=_holdout(predictions),
    )
    table = _with_bands(table, options.edges)
    table = _with_reasons(table, reasons, options.config)
    table = table.join(working_columns(ids, features, run_date=run_date).set_axis(table.index))
    return table.sort_values(
        ["arr_at_risk", "account_id"], ascending=[False, True], kind="stable", ignore_index=True
    )


def _risk_change(
    predictions: pd.DataFrame, change: pd.DataFrame, previous: pd.DataFrame | None
) -> pd.Series:
    """Churn probability now minus at the previous run, for every account scored both times
    (from ``previous`` predictions when given, else only the movers in ``changes``)."""
    ids = predictions["account_id"].astype(str)
    if previous is not None and len(previous):
        before = previous.assign(account_id=previous["account_id"].astype(str))
        before = before.drop_duplicates("account_id").set_index("account_id")
        return predictions["churn_probability"] - ids.map(before["churn_probability"])
    if len(change):
        return ids.map(change["probability_change"]).astype(float)
    return pd.Series(np.nan, index=predictions.index)


def _holdout(predictions: pd.DataFrame) -> pd.Series:
    """``holdout`` of the scored frame as plain booleans (missing = not held out)."""
    if HOLDOUT_COLUMN not in predictions.columns:
        return pd.Series(False, index=predictions.index)
    return predictions[HOLDOUT_COLUMN].astype("boolean").fillna(False).astype(bool)


def _with_bands(table: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    low, high = band_bounds(table["churn_probability"], edges)
    arr = pd.to_numeric(table["arr"], errors="coerce").to_numpy(float)
    return table.assign(
        risk_band=risk_bands(table["churn_probability"], edges),
        risk_band_order=risk_band_index(table["churn_probability"].fillna(0), edges),
        arr_at_risk_low=low * arr,
        arr_at_risk_high=high * arr,
        arr_at_risk_range=[
            _money_range(lo * a, hi * a, lo, hi) for lo, hi, a in zip(low, high, arr, strict=True)
        ],
    )


def _money_range(low: float, high: float, p_low: float, p_high: float) -> str | None:
    """ARR at risk as the band it falls in: "<$12k", "$31k–62k", ">$560k"."""
    if np.isnan(low) or np.isnan(high):
        return None
    if p_low == 0:
        return f"<{short_money(high)}"
    if p_high == 1:
        return f">{short_money(low)}"
    return f"{short_money(low)}–{short_money(high).lstrip('$')}"


def short_money(value: float) -> str:
    """$950 / $12k / $1.2M: two or three significant figures, for ranges read at a glance."""
    if value is None or np.isnan(value):
        return "–"
    sign, value = ("-" if value < 0 else ""), abs(float(value))
    if value < 1_000:
        return f"{sign}${value:,.0f}"
    if value < 1_000_000:
        return f"{sign}${value / 1_000:.3g}k"
    return f"{sign}${value / 1_000_000:.3g}M"


def _with_reasons(
    table: pd.DataFrame, reasons: pd.DataFrame | None, config: RiskListConfig
) -> pd.DataFrame:
    """Levers, context and what helps (from the long reasons frame when given, else the
    joined text the predictions carry); one next step per listed account; green-churn drivers
    kept to levers."""
    if reasons is None:
        split = pd.DataFrame(
            {
                "levers": table["top_reasons"].to_numpy(),
                "context": None,
                "helps": table["protective_factors"].to_numpy(),
                "lever_feature": None,
                "lever_category": None,
            },
            index=table["account_id"].astype(str),
        )
    else:
        split = split_reasons(reasons)
    ids = table["account_id"].astype(str)
    out = table.assign(**{c: ids.map(split[c]) for c in ("levers", "context", "helps")})
    out["lever_category"] = ids.map(split["lever_category"])
    out["next_step"] = next_steps(out, split[["lever_feature", "lever_category"]], config)
    out["green_churn_drivers"] = [
        _lever_drivers(d, lv) if g else None
        for d, lv, g in zip(
            out["green_churn_drivers"], out["levers"], out["green_churn"], strict=True
        )
    ]
    return out


def _lever_drivers(drivers: object, levers: object) -> str | None:
    """The green-churn drivers that are levers (a missing value or context is never one)."""
    if not isinstance(drivers, str) or not isinstance(levers, str):
        return None
    mine = set(levers.split("; "))
    kept = [d for d in drivers.split("; ") if d in mine]
    return "; ".join(kept) or None


_WORKING_FEATURES = (
    "days_to_next_renewal",
    "days_since_last_csm_touch",
    "days_since_champion_left",
    "champion_left_180d",
    "exec_sponsor_left_90d",
    "exec_sponsor_left_180d",
)


def working_columns(
    account_ids: pd.Series, features: pd.DataFrame | None, *, run_date: date | None = None
) -> pd.DataFrame:
    """Renewal date and days to it, last CSM touch (date and days ago) and champion status
    per account, from the feature frame's point-in-time columns (dates = ``as_of`` plus or
    minus the days; ``run_date`` when the frame has no ``as_of``). Columns the frame lacks
    come back empty, never guessed."""
    out = pd.DataFrame(index=pd.Index(account_ids.astype(str), name="account_id"))
    frame = _feature_rows(out.index, features)
    as_of = _as_of(frame, run_date)
    renewal = _days(frame, "days_to_next_renewal")
    touch = _days(frame, "days_since_last_csm_touch")
    out["renewal_date"] = _shift(as_of, renewal)
    out["days_to_renewal"] = renewal
    out["last_csm_touch"] = _shift(as_of, -touch)
    out["days_since_last_csm_touch"] = touch
    out["champion_status"] = champion_status(frame)
    out["champion_recent"] = _recent_departure(frame)
    return out.reset_index(drop=True)


def _feature_rows(ids: pd.Index, features: pd.DataFrame | None) -> pd.DataFrame:
    if features is None or "account_id" not in features.columns:
        return pd.DataFrame(index=ids)
    keep = [c for c in ("as_of", *_WORKING_FEATURES) if c in features.columns]
    rows = features.assign(account_id=features["account_id"].astype(str))
    return rows.drop_duplicates("account_id").set_index("account_id")[keep].reindex(ids)


def _as_of(frame: pd.DataFrame, run_date: date | None) -> pd.Series:
    if "as_of" in frame.columns:
        return pd.to_datetime(frame["as_of"]).dt.normalize()
    fallback = pd.Timestamp(run_date) if run_date is not None else pd.NaT
    return pd.Series(fallback, index=frame.index, dtype="datetime64[ns]")


def _days(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _shift(as_of: pd.Series, days: pd.Series) -> pd.Series:
    """``as_of`` + ``days`` as ISO dates (None where either is missing)."""
    when = as_of + pd.to_timedelta(days.round(), unit="D")
    dates = [None if pd.isna(t) else t.date().isoformat() for t in when]
    return pd.Series(dates, index=when.index, dtype=object)


def _recent_departure(frame: pd.DataFrame, days: int = 180) -> pd.Series:
    """A champion or exec sponsor left within ``days`` (the list marks it)."""
    champion = _days(frame, "days_since_champion_left") <= days
    for column in ("champion_left_180d", "exec_sponsor_left_90d", "exec_sponsor_left_180d"):
        champion |= _days(frame, column) > 0
    return champion.astype(bool)


def champion_status(frame: pd.DataFrame) -> pd.Series:
    """ "Champion left 63 days ago", "Exec sponsor left in the last 90 days", "No departure on
    record" (when the contact-change features exist), else None (not tracked)."""
    days = _days(frame, "days_since_champion_left")
    left_180 = _days(frame, "champion_left_180d") > 0
    sponsor_90 = _days(frame, "exec_sponsor_left_90d") > 0
    sponsor_180 = _days(frame, "exec_sponsor_left_180d") > 0
    tracked = any(c in frame.columns for c in _WORKING_FEATURES[2:])
    out = []
    for d, c180, s90, s180 in zip(days, left_180, sponsor_90, sponsor_180, strict=True):
        parts = []
        if not np.isnan(d):
            parts.append(f"Champion left {d:,.0f} days ago")
        elif c180:
            parts.append("Champion left in the last 180 days")
        if s90 or s180:
            parts.append(f"Exec sponsor left in the last {90 if s90 else 180} days")
        out.append("; ".join(parts) if parts else "No departure on record" if tracked else None)
    return pd.Series(out, index=frame.index, dtype=object)


def _by_owner(table: pd.DataFrame):
    used: set[str] = set()
    for owner, rows in table.groupby("csm_owner", sort=True):
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(owner)).strip("_")[:60] or UNASSIGNED
        if slug.lower() in used:
            slug = f"{slug}_{hashlib.sha1(str(owner).encode()).hexdigest()[:6]}"
        used.add(slug.lower())
        yield str(owner), f"risk_list_{slug}", rows


def _csv(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows[list(CSV_COLUMNS)].rename(columns=CSV_COLUMNS)
    out["run_date"] = pd.to_datetime(out["run_date"]).dt.date.astype(str)
    for column in ("arr", "arr_at_risk", "expected_expansion_arr"):
        out[column] = out[column].round(0)
    for column in ("churn_probability", "expansion_probability"):
        out[column] = out[column].round(3)
    out["risk_change_points"] = (out["risk_change_points"] * 100).round(0)
    for column in ("churn_risk", "arr_at_risk_range", "change_since_last_run"):
        out[column] = out[column].map(lambda v: v.replace("–", "-") if isinstance(v, str) else v)
    return out  # plain hyphens: a spreadsheet opening the CSV as Latin-1 still reads "20-30%"


def portfolio_summary(table: pd.DataFrame, changes: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The CS leader's figures: ARR at risk by segment x tier, green churn, expansion, movers."""
    by = table.groupby(["segment", "churn_tier"], dropna=False)
    seg_tier = by.agg(
        accounts=("account_id", "size"), arr=("arr", "sum"), arr_at_risk=("arr_at_risk", "sum")
    ).reset_index()
    seg_tier["tier_order"] = seg_tier["churn_tier"].map({t: i for i, t in enumerate(TIERS)})
    seg_tier = seg_tier.sort_values(["segment", "tier_order"]).drop(columns="tier_order")
    held = table["holdout"] if "holdout" in table.columns else pd.Series(False, index=table.index)
    listed = table[~held]
    green = listed[listed["green_churn"]]
    expand = listed[listed["expansion_quadrant"] == "expand"]
    totals = pd.DataFrame(
        {
            "accounts": [len(table)],
            "held_out_accounts": [int(held.sum())],
            "held_out_arr": [table.loc[held, "arr"].sum()],
            "arr": [table["arr"].sum()],
            "arr_at_risk": [table["arr_at_risk"].sum()],
            "high_risk_accounts": [int((table["churn_tier"] == "high").sum())],
            "green_churn_accounts": [len(green)],
            "green_churn_arr": [green["arr"].sum()],
            "expansion_accounts": [len(expand)],
            "expansion_arr_base": [expand["arr"].sum()],
            "expected_expansion_arr": [expand["expected_expansion_arr"].sum()],
        }
    )
    quadrants = (
        table.groupby("expansion_quadrant")
        .agg(accounts=("account_id", "size"), arr=("arr", "sum"))
        .reindex(list(QUADRANTS), fill_value=0)
        .reset_index()
    )
    movers = changes.head(25).copy() if len(changes) else changes
    return {
        "totals": totals,
        "by_segment_tier": seg_tier,
        "quadrants": quadrants,
        "movers": movers,
        "green": green,
        "expand": expand,
    }


def summary_markdown(
    summary: dict[str, pd.DataFrame], run_date: date, *, horizon_days: int | None = None
) -> str:
    """The summary as Markdown, for chat or e-mail."""
    t = summary["totals"].iloc[0]
    horizon = f"within the next {horizon_days} days" if horizon_days else "within the horizon"
    lines = [
        f"# Weekly churn risk summary — {run_date.isoformat()}",
        "",
        f"Churn risk is the chance an account churns {horizon}.",
        "",
        f"- Accounts scored: {int(t['accounts']):,} with {format_money(t['arr'])} ARR",
        f"- ARR at risk (probability x ARR): **{format_money(t['arr_at_risk'])}**",
        f"- High-risk accounts: {int(t['high_risk_accounts']):,}",
        f"- Held out for measurement (scored, kept off the CSM lists): "
        f"{int(t['held_out_accounts']):,} accounts, {format_money(t['held_out_arr'])} ARR",
        f"- Green churn (health green, risk high): {int(t['green_churn_accounts']):,} accounts, "
        f"**{format_money(t['green_churn_arr'])}** ARR",
        f"- Expansion list (healthy, low penetration): {int(t['expansion_accounts']):,} accounts, "
        f"expected expansion {format_money(t['expected_expansion_arr'])}",
        "",
        "## ARR at risk by segment and tier",
        "",
        "| segment | tier | accounts | ARR | ARR at risk |",
        "|---|---|---:|---:|---:|",
    ]
    for row in summary["by_segment_tier"].itertuples(index=False):
        lines.append(
            f"| {_md(row.segment)} | {row.churn_tier} | {row.accounts:,} | "
            f"{format_money(row.arr)} | {format_money(row.arr_at_risk)} |"
        )
    lines += ["", "## The week's movers", ""]
    movers = summary["movers"]
    if movers.empty:
        lines.append("No earlier run to compare with, or nothing moved past the threshold.")
    for row in movers.itertuples(index=False):
        line = f"- {_md(row.name)} ({_md(row.csm_owner)}): {_md(row.change, TEXT_CHARS)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&=:\"'$^])")


def _md(text: object, limit: int = NAME_CHARS) -> str:
    """Markdown-safe inline text: every character Markdown (CommonMark/GFM) gives a meaning
    is backslash-escaped (no emphasis, links, raw HTML, headings, table breaks), line breaks
    become spaces, and the text is cut to ``limit`` characters."""
    value = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    value = re.sub(r"[\r\n\t]+", " ", str(clip(value, limit)))
    return _MD_SPECIAL.sub(r"\\\1", value)


# --- HTML ---------------------------------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _days_key(value: SupportsFloat | None) -> str:
    """Whole days for a ``data-`` attribute the filters compare ("" when unknown)."""
    return "" if value is None or _missing(value) else f"{float(value):.0f}"


def _search_text(values: list[object]) -> str:
    """The text the search box matches: lower-case, the pieces joined by spaces."""
    return " ".join(str(v).replace("_", " ") for v in values if not _missing(v)).lower()


def _in_days(value: SupportsFloat | None) -> str:
    if value is None or _missing(value):
        return ""
    days = round(float(value))
    if days < 0:
        return f"{-days:,} days ago"
    return "today" if days == 0 else "tomorrow" if days == 1 else f"in {days:,} days"


def _days_ago(value: SupportsFloat | None) -> str:
    if value is None or _missing(value):
        return ""
    days = round(float(value))
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days:,} days ago"


def _points(value: SupportsFloat | None) -> str:
    """A week-over-week move in probability points: "▲ 12 pts", "▼ 3 pts", "no change"."""
    if value is None or _missing(value):
        return ""
    points = round(float(value) * 100)
    if points == 0:
        return "no change"
    unit = "pt" if abs(points) == 1 else "pts"
    return f"{'▲' if points > 0 else '▼'} {abs(points)} {unit}"


def _pct(value: SupportsFloat | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    number = float(value)
    if 0 < number < 0.005:
        return "<1%"  # "0%" would read as "cannot churn"
    return f"{number:.0%}"


def _sortkey(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _records(rows: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, missing values as None (column-wise, fast)."""
    columns = {
        c: [None if v is None or v is pd.NA or v != v else v for v in rows[c].tolist()]
        for c in rows.columns
    }
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


def _page_context(
    owner: str, rows: pd.DataFrame, records: list[dict], run_date: date, labels: list[str]
) -> dict:
    return {
        "owner": clip(owner),
        "run_date": run_date.isoformat(),
        "totals": {
            "accounts": len(rows),
            "arr": rows["arr"].sum(),
            "arr_at_risk": rows["arr_at_risk"].sum(),
            "high": int((rows["churn_tier"] == "high").sum()),
            "green_arr": rows.loc[rows["green_churn"], "arr"].sum(),
        },
        "rows": records,
        "segments": sorted({str(r["segment"]) for r in records}),
        "green": [r for r in records if r["green_churn"]],
        "expand": sorted(
            (r for r in records if r["expansion_quadrant"] == "expand"),
            key=lambda r: -(r["expected_expansion_arr"] or 0.0),
        ),
        "changes": [r for r in records if r["change"] is not None],
        "risk_chart": risk_band_svg(rows["risk_band_order"], labels),
        "segment_chart": _segment_chart(rows),
        "quadrants": QUADRANTS,
    }


def _summary_context(
    summary: dict[str, pd.DataFrame],
    table: pd.DataFrame,
    run_date: date,
    paths: RiskListPaths,
    labels: list[str],
) -> dict:
    band = table.set_index(table["account_id"].astype(str))["risk_band"]
    movers = for_people(summary["movers"])
    if len(movers):
        movers = movers.assign(risk_band=movers["account_id"].astype(str).map(band))
    return {
        "run_date": run_date.isoformat(),
        "totals": summary["totals"].iloc[0].to_dict(),
        "seg_tier": _records(summary["by_segment_tier"]),
        "quadrants": _records(summary["quadrants"]),
        "quadrant_labels": QUADRANTS,
        "movers": _records(movers),
        "green": _records(for_people(summary["green"].head(50))),
        "expand": _records(
            for_people(
                summary["expand"].sort_values("expected_expansion_arr", ascending=False).head(50)
            )
        ),
        "csm_links": [(clip(owner), path.name) for owner, path in paths.csm_html.items()],
        "risk_chart": risk_band_svg(table["risk_band_order"], labels),
        "segment_chart": _segment_chart(table),
    }


def risk_band_svg(band_order: pd.Series, labels: list[str]) -> Markup:
    """Accounts per risk band (position in ``labels``, the bands the list shows) as an inline
    SVG bar chart."""
    counts = np.bincount(band_order.to_numpy(int), minlength=len(labels))[: len(labels)]
    return columns_svg(labels, counts.tolist(), title="Accounts by churn risk band")


def _segment_chart(rows: pd.DataFrame) -> Markup:
    """ARR at risk per segment, largest first, as inline SVG bars labelled in money."""
    by_segment = rows.groupby("segment")["arr_at_risk"].sum().sort_values(ascending=False)
    return horizontal_bars_svg(by_segment, title="ARR at risk by segment", label=format_money)


_FILTERS: dict[str, Callable[..., str]] = {
    "money": format_money,
    "pct": _pct,
    "sortkey": _sortkey,
    "short_money": short_money,
    "days_key": _days_key,
    "search_text": _search_text,
    "in_days": _in_days,
    "days_ago": _days_ago,
    "points": _points,
}
