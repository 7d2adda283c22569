"""Score given ``(account_id, as_of)`` rows with chosen model versions, for evaluation against
labels someone else made or per-account observation dates.

The rows go through the one feature path (``features.build.build_model_features``), built once for
the set of distinct ``as_of`` dates in the rows, then joined to them. Every requested row comes
back, in the order given, with a ``status``:

- ``scored``: the account is active at ``as_of``; probabilities are set;
- ``not_active``: the account exists but has no active contract at ``as_of`` (before it signed,
  after it churned), so it is not a customer to score: probabilities are NaN;
- ``unknown_account``: the warehouse has no such account: probabilities are NaN.

Rows are kept rather than dropped so that a scores file lines up with the labels file it came
from; the CLI prints the count per status.

A model must not score a moment before the data it was trained on ended (its outcomes would be
in the score): :func:`predict_rows` refuses that with :class:`LookaheadError` unless
``allow_lookahead`` is given.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import KEYS, build_model_features
from features.config import FeatureConfig
from features.sources import staging_view
from features.warehouse import Warehouse
from models.bundle import ModelBundle
from serving.lookahead import check_lookahead

STATUSES = ("scored", "not_active", "unknown_account")
ROW_COLUMNS = ("account_id", "as_of")


class RowsFileError(ValueError):
    """The rows to score cannot be read or lack a usable ``account_id`` / ``as_of``; the message
    names the file, the column and example values."""


# --- the rows -------------------------------------------------------------------------------


def read_rows(path: Path | str) -> pd.DataFrame:
    """The ``(account_id, as_of)`` rows of a ``.parquet`` or ``.csv`` file (other columns are
    ignored), checked by :func:`normalize_rows`."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise RowsFileError(f"{path}: rows must be a .parquet or .csv file")
    if not path.is_file():
        raise RowsFileError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={"account_id": str})
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow and the csv parser raise many types
        raise RowsFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    return normalize_rows(frame, source=str(path))


def normalize_rows(rows: pd.DataFrame, *, source: str = "rows") -> pd.DataFrame:
    """``account_id`` as text and ``as_of`` as a naive UTC midnight (a date, or a timestamp at
    00:00; time-zone aware values are converted to UTC). ``source`` names the input in errors."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        have = ", ".join(map(str, list(rows.columns)[:12])) or "none"
        raise RowsFileError(f"{source}: missing column(s) {missing}; it has: {have}")
    out = rows[list(ROW_COLUMNS)].copy()
    blank = out["account_id"].isna() | (out["account_id"].astype(str).str.strip() == "")
    if blank.any():
        raise RowsFileError(
            f"{source}: column account_id is empty in {int(blank.sum())} row(s), "
            f"e.g. row(s) {out.index[blank][:3].tolist()}"
        )
    out["account_id"] = out["account_id"].astype(str)
    out["as_of"] = _as_of(out["as_of"], source)
    return out.reset_index(drop=True)


def _as_of(values: pd.Series, source: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    except (TypeError, ValueError) as exc:
        raise RowsFileError(f"{source}: column as_of is not dates ({exc})") from exc
    bad = parsed.isna()
    if bad.any():
        raise RowsFileError(
            f"{source}: column as_of has {int(bad.sum())} value(s) that are not dates, "
            f"e.g. {values[bad].head(3).tolist()}"
        )
    naive = parsed.dt.tz_localize(None).astype("datetime64[us]")
    off = naive != naive.dt.normalize()
    if off.any():
        raise RowsFileError(
            f"{source}: column as_of has {int(off.sum())} value(s) that are not midnights, "
            f"e.g. {values[off].head(3).tolist()}: an observation date is a day (features count "
            "activity by whole days), give dates or timestamps at 00:00 UTC"
        )
    return naive


# --- look-ahead -----------------------------------------------------------------------------


# --- scoring --------------------------------------------------------------------------------


def predict_rows(
    wh: Warehouse,
    rows: pd.DataFrame,
    bundles: Sequence[tuple[ModelBundle, str]],
    *,
    available_tables: Collection[str],
    allow_lookahead: bool = False,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Probabilities of each bundle's target for every requested row, in the order given.

    ``bundles`` pairs each model with the name scores carry (``"churnlens-churn v3"``), one per
    target. The warehouse must be staged (``features.validation.prepare_sources``), with
    ``available_tables`` from its report. Columns: ``account_id, as_of``, then per bundle
    ``<target>_probability`` and ``<target>_model``, then ``status`` (see the module doc)."""
    if not bundles:
        raise ValueError("predict_rows needs at least one (bundle, name) pair")
    targets = [b.target for b, _ in bundles]
    if len(set(targets)) < len(targets):
        raise ValueError(f"one bundle per target, got targets {targets}")
    wanted = normalize_rows(rows)
    if wanted.empty:
        raise RowsFileError("rows: no rows to score")
    first = wanted["as_of"].min().to_pydatetime()
    for bundle, name in bundles:
        check_lookahead(bundle, first.date(), allow=allow_lookahead, name=name)
    dates = sorted(wanted["as_of"].unique())
    features = build_model_features(
        wh,
        [d.to_pydatetime() for d in pd.to_datetime(dates)],
        feature_names={name for bundle, _ in bundles for name in bundle.feature_names},
        available_tables=available_tables,
        config=config,
    )
    out = _join(wanted, features, bundles)
    out["status"] = _status(out, features, _known_accounts(wh))
    return out


def _join(
    wanted: pd.DataFrame, features: pd.DataFrame, bundles: Sequence[tuple[ModelBundle, str]]
) -> pd.DataFrame:
    """Each requested row with the probabilities of the feature row it names (NaN without one)."""
    keys = wanted.drop_duplicates(KEYS)
    found = keys.merge(features, on=KEYS, how="inner", validate="one_to_one")
    scores = found[KEYS].copy()
    for bundle, name in bundles:
        probability = bundle.predict_proba(found) if len(found) else np.empty(0)
        scores[f"{bundle.target}_probability"] = probability
        scores[f"{bundle.target}_model"] = name
    scores["_scored"] = True
    out = wanted.merge(scores, on=KEYS, how="left", validate="many_to_one")
    for bundle, _ in bundles:
        out[f"{bundle.target}_probability"] = out[f"{bundle.target}_probability"].astype(float)
    return out


def _status(out: pd.DataFrame, features: pd.DataFrame, known: set[str]) -> pd.Series:
    scored = out.pop("_scored").eq(True).to_numpy()
    known_mask = out["account_id"].isin(known).to_numpy()
    status = np.select([scored, known_mask], ["scored", "not_active"], "unknown_account")
    return pd.Series(status, index=out.index, dtype=object)


def _known_accounts(wh: Warehouse) -> set[str]:
    frame = wh.query(f"SELECT DISTINCT account_id FROM {staging_view('accounts')}")
    return set(frame["account_id"].astype(str))


def status_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Rows per status, every status listed."""
    counts = scores["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def write_scores(scores: pd.DataFrame, path: Path | str) -> Path:
    """Write scores as ``.csv`` or (any other suffix) Parquet, replacing the file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        scores.to_csv(tmp, index=False)
    else:
        scores.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


# --- choosing the model ---------------------------------------------------------------------
