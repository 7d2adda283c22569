"""Benchmark: churnlens against a data scientist's notebook models, on worlds others wrote.

    .venv/bin/python benchmarks/bench_outside.py --worlds /work/ow/crm5-seed1 \
        /work/ow/crm5-seed1-cut3m /work/ow/crm5-seed1-tx [--test-start YYYY-MM-DD] [--reps 1000]
        [--seed 0] [--work /tmp/churnlens-bench-outside] [--markdown out.md]

For each world (``outside_world.py`` says what one is), out of time:

- the test start is the label date two thirds of the way through the world's label dates (or
  ``--test-start``); the baselines train on the label rows settled before it (``as_of +
  horizon <= test start``), and every labelled row on or after it is scored;
- **churnlens** runs as a user would, through its CLI: a config pointing at a copy of the
  world's DuckDB file (defaults, plus the world's label definition: horizon, grace, target),
  ``churnlens train --run-date <test start>`` (its own labels from its own label SQL), then
  ``churnlens predict --rows <test rows> --alias challenger`` (the version just trained). When
  a step fails the table says ``failed: <reason>`` for it;
- the **baselines** are what a data scientist writes in an afternoon, from the raw tables with
  this file's own DuckDB/pandas code and no churnlens feature: counts per event type and
  distinct users over the 28 days before ``as_of``, tenure, current ARR and seats (and on a
  transaction world recency, frequency and monetary value over 28/90 days), into a plain
  LightGBM and a standardised logistic regression on log counts; on a transaction world also
  recency alone (days since the last event, a ranking: no ECE or observed/expected);
- on exactly the same rows (the test rows churnlens scored; all test rows when it failed):
  ROC-AUC with a bootstrap interval over accounts (accounts resampled with replacement,
  ``--reps`` times, seeded), PR-AUC, top-decile lift (positive rate in the top 10 % of all test
  rows over the base rate), ECE (10 equal-count bins, as ``models.metrics``) and
  observed/expected events, and the paired ROC-AUC difference churnlens minus each baseline
  with its bootstrap interval (same resamples).

The ground-truth label files are read only here, for evaluation; churnlens never sees them.
Generated data (the work directory) stays out of git.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from outside_world import World, read_world

CHURNLENS = "churnlens"
LIGHTGBM = "plain LightGBM"
LOGISTIC = "logistic regression"
RECENCY = "recency alone"  # days since the last event, on transaction worlds: a ranking only
BASELINES = (LIGHTGBM, LOGISTIC)
RANKINGS = (RECENCY,)  # scores that are not probabilities: no ECE or observed/expected
WINDOW_DAYS = 28
LONG_WINDOW_DAYS = 90
TARGETS = {"contract": "churn", "transaction": "churn_inactive"}


# --- the split ------------------------------------------------------------------------------


def test_start_of(labels: pd.DataFrame) -> date:
    """The label date two thirds of the way through the distinct label dates."""
    dates = sorted(pd.to_datetime(labels["as_of"]).dt.date.unique())
    return dates[min(len(dates) - 1, (2 * len(dates)) // 3)]


def split(
    labels: pd.DataFrame, start: date, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows settled before ``start``, rows on or after it)."""
    as_of = pd.to_datetime(labels["as_of"])
    settled = as_of + pd.Timedelta(days=horizon_days) <= pd.Timestamp(start)
    train = labels[settled].reset_index(drop=True)
    test = labels[as_of >= pd.Timestamp(start)].reset_index(drop=True)
    return train, test


# --- the notebook baseline ------------------------------------------------------------------


def notebook_features(duck: Path, rows: pd.DataFrame, *, transactions: bool) -> pd.DataFrame:
    """One row per (account_id, as_of) of ``rows``: what a data scientist would compute from
    the raw tables. Only events before ``as_of`` and contracts started by it are seen."""
    con = duckdb.connect(str(duck), read_only=True)
    try:
        obs = rows[["account_id", "as_of"]].drop_duplicates().copy()
        obs["as_of"] = pd.to_datetime(obs["as_of"]).astype("datetime64[us]")
        con.register("obs", obs)
        window = f"e.event_time >= o.as_of - INTERVAL {WINDOW_DAYS} DAY AND e.event_time < o.as_of"
        per_type = con.execute(
            f"""SELECT o.account_id, o.as_of, e.event_type, count(*) AS n
                FROM obs o JOIN usage_events e ON e.account_id = o.account_id AND {window}
                GROUP BY ALL"""
        ).df()
        users = con.execute(
            f"""SELECT o.account_id, o.as_of, count(DISTINCT e.user_id) AS users_28d,
                       count(*) AS events_28d, sum(e.quantity) AS quantity_28d
                FROM obs o JOIN usage_events e ON e.account_id = o.account_id AND {window}
                GROUP BY ALL"""
        ).df()
        commercial = con.execute(
            """SELECT o.account_id, o.as_of,
                      date_diff('day', min(c.start_date), o.as_of::DATE) AS tenure_days,
                      sum(c.arr) FILTER (WHERE c.end_date IS NULL OR c.end_date > o.as_of::DATE)
                          AS arr,
                      sum(c.seats) FILTER (WHERE c.end_date IS NULL OR c.end_date > o.as_of::DATE)
                          AS seats
               FROM obs o JOIN contracts c
                 ON c.account_id = o.account_id AND c.start_date <= o.as_of::DATE
               GROUP BY o.account_id, o.as_of"""
        ).df()
        parts = [users, commercial]
        if transactions:
            parts.append(_rfm(con))
    finally:
        con.close()
    counts = per_type.pivot_table(
        index=["account_id", "as_of"], columns="event_type", values="n", fill_value=0
    )
    counts.columns = [f"n_{c}_28d" for c in counts.columns]
    out = obs.merge(counts.reset_index(), on=["account_id", "as_of"], how="left")
    for part in parts:
        part["as_of"] = pd.to_datetime(part["as_of"]).astype("datetime64[us]")
        out = out.merge(part, on=["account_id", "as_of"], how="left")
    features = [c for c in out.columns if c not in ("account_id", "as_of")]
    out[features] = out[features].astype(float)
    count_like = [c for c in features if c.startswith("n_") or c.endswith(("_28d", "_90d"))]
    out[count_like] = out[count_like].fillna(0.0)
    return out


def _rfm(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Recency, frequency and monetary value per observation, from a daily roll-up."""
    return con.execute(
        f"""WITH daily AS (
                SELECT account_id, event_time::DATE AS day, count(*) AS n, sum(quantity) AS q
                FROM usage_events GROUP BY ALL
            )
            SELECT o.account_id, o.as_of,
                   date_diff('day', max(d.day), o.as_of::DATE) AS days_since_last_event,
                   date_diff('day', min(d.day), o.as_of::DATE) AS days_since_first_event,
                   count(*) FILTER (WHERE d.day >= o.as_of::DATE - {LONG_WINDOW_DAYS})
                       AS active_days_90d,
                   coalesce(sum(d.n) FILTER (WHERE d.day >= o.as_of::DATE - {LONG_WINDOW_DAYS}), 0)
                       AS events_90d,
                   coalesce(sum(d.q) FILTER (WHERE d.day >= o.as_of::DATE - {LONG_WINDOW_DAYS}), 0)
                       AS quantity_90d,
                   count(*) FILTER (WHERE d.day >= o.as_of::DATE - {WINDOW_DAYS})
                       AS active_days_28d
            FROM obs o JOIN daily d ON d.account_id = o.account_id AND d.day < o.as_of::DATE
            GROUP BY o.account_id, o.as_of"""
    ).df()


def fit_baselines(
    train: pd.DataFrame, test: pd.DataFrame, label: str, *, seed: int
) -> dict[str, np.ndarray]:
    """Probabilities on ``test`` of the two notebook models fitted on ``train``."""
    features = [c for c in train.columns if c not in ("account_id", "as_of", label)]
    X, y = train[features], train[label].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(f"the training rows hold one class only ({len(y)} rows)")
    booster = lgb.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=15,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=2,
        verbose=-1,
    ).fit(X, y)
    logistic = make_pipeline(
        FunctionTransformer(_signed_log),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=5000),
    ).fit(X.fillna(0.0), y)
    return {
        LIGHTGBM: booster.predict_proba(test[features])[:, 1],
        LOGISTIC: logistic.predict_proba(test[features].fillna(0.0))[:, 1],
    }


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


# --- churnlens through its CLI --------------------------------------------------------------


@dataclass
class ChurnlensRun:
    scores: pd.DataFrame | None = None
    failed: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def churnlens_config(world: World, work: Path) -> Path:
    """A config pointing at a copy of the world's warehouse, with the world's label definition."""
    data_dir = work / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a fresh registry: the version trained here is the challenger
    data_dir.mkdir(parents=True)
    duck = data_dir / "warehouse.duckdb"
    shutil.copyfile(world.duckdb, duck)
    config = _merge(
        {"data_dir": str(data_dir), "warehouse": {"duckdb_path": str(duck)}},
        {"model": {"targets": [TARGETS[world.kind]]}},
    )
    config = _merge(config, world.churnlens)
    path = work / "churnlens.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def run_churnlens(world: World, test: pd.DataFrame, start: date, work: Path) -> ChurnlensRun:
    """Train at the test start and score the test rows, both through the ``churnlens`` CLI."""
    run = ChurnlensRun()
    config = churnlens_config(world, work)
    rows = work / "test_rows.parquet"
    test[["account_id", "as_of"]].to_parquet(rows, index=False)
    scores = work / "scores.parquet"
    target = TARGETS[world.kind]
    steps = {
        "train": ["train", "--run-date", start.isoformat(), "-c", str(config)],
        "predict": [
            *("predict", "--rows", str(rows), "--out", str(scores), "--target", target),
            *("--alias", "challenger", "-c", str(config)),
        ],
    }
    for step, args in steps.items():
        clock = time.perf_counter()
        done = _cli(args, log=work / f"{step}.log")
        run.seconds[step] = time.perf_counter() - clock
        if done.returncode != 0:
            run.failed = f"{step}: {_reason(done.stdout + done.stderr)}"
            return run
    run.scores = pd.read_parquet(scores)
    return run


def _cli(args: list[str], *, log: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("churnlens")
    env = os.environ | {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(log.parent.parent / "prefect-home"),
        "COLUMNS": "200",
    }
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)
    log.write_text(f"$ churnlens {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    return done


def _reason(output: str) -> str:
    """The line that says why: the last ``SomeError: message`` line (a traceback's last line or
    the CLI's one-line error), else the last line naming an error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = [(i, m) for i, line in enumerate(lines) if (m := _RAISED.match(line))]
    if raised:
        i, match = raised[-1]
        text = f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}"
        if text.endswith(":") and i + 1 < len(lines):  # the reason is on the next line
            text = f"{text} {lines[i + 1].lstrip('- ')}"
    else:
        named = [line for line in lines if "Error" in line or "error" in line]
        text = (named or lines or ["no output"])[-1]
    text = re.sub(r" \([^()]*\.ya?ml\)", "", text)  # the generated config's path says nothing
    return text if len(text) <= 200 else text[:197] + "..."


_RAISED = re.compile(r"^([\w.]*(?:Error|Exception)): (.+)$")


# --- metrics --------------------------------------------------------------------------------


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    order = np.argsort(p, kind="stable")
    return float(
        sum(len(c) * abs(y[c].mean() - p[c].mean()) for c in np.array_split(order, bins)) / len(y)
    )


def point_metrics(y: np.ndarray, p: np.ndarray, *, probability: bool = True) -> dict[str, float]:
    top = np.argsort(-p, kind="stable")[: int(np.ceil(0.1 * len(p)))]
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "lift": float(y[top].mean() / y.mean()),
        "ece": ece(y, p) if probability else float("nan"),
        "obs_exp": float(y.sum() / p.sum()) if probability else float("nan"),
    }


def bootstrap_auc(
    accounts: np.ndarray, y: np.ndarray, scores: dict[str, np.ndarray], *, reps: int, seed: int
) -> dict[str, np.ndarray]:
    """ROC-AUC of every model on ``reps`` resamples of the accounts (the same resamples for all)."""
    rows_of = pd.Series(np.arange(len(y))).groupby(accounts).indices
    keys = np.array(list(rows_of))
    rng = np.random.default_rng(seed)
    out = {name: [] for name in scores}
    for _ in range(reps):
        idx = np.concatenate([rows_of[k] for k in rng.choice(keys, size=len(keys))])
        if len(np.unique(y[idx])) < 2:
            continue
        for name, p in scores.items():
            out[name].append(roc_auc_score(y[idx], p[idx]))
    return {name: np.asarray(v) for name, v in out.items()}


# --- one world ------------------------------------------------------------------------------


@dataclass
class Result:
    world: str
    rows: int
    positives: int
    train_rows: int
    test_start: date
    note: str
    metrics: dict[str, dict[str, float]]
    intervals: dict[str, tuple[float, float]]
    diffs: dict[str, tuple[float, float, float]]
    failed: str | None


def evaluate_world(world: World, *, start: date | None, reps: int, seed: int, work: Path) -> Result:
    labels = pd.read_parquet(world.labels)
    labels["account_id"] = labels["account_id"].astype(str)
    labels["as_of"] = pd.to_datetime(labels["as_of"]).astype("datetime64[us]")
    start = start or test_start_of(labels)
    train, test = split(labels, start, world.horizon_days)
    label = world.label_column
    transactions = world.kind == "transaction"
    clock = time.perf_counter()
    feats = notebook_features(world.duckdb, pd.concat([train, test]), transactions=transactions)
    keyed = ["account_id", "as_of"]
    train_x = train[[*keyed, label]].merge(feats, on=keyed, how="left")
    test_x = test[[*keyed, label]].merge(feats, on=keyed, how="left")
    probs = fit_baselines(train_x, test_x, label, seed=seed)
    print(f"  baselines: {time.perf_counter() - clock:.0f} s", flush=True)
    run = run_churnlens(world, test, start, work)
    print(f"  churnlens: {run.seconds} {run.failed or 'ok'}", flush=True)
    frame = test_x[[*keyed, label]].copy()
    for name, p in probs.items():
        frame[name] = p
    others = list(BASELINES)
    if transactions:
        frame[RECENCY] = test_x["days_since_last_event"].fillna(np.inf).to_numpy()
        others.append(RECENCY)
    note = ""
    if run.scores is not None:
        column = f"{TARGETS[world.kind]}_probability"
        scored = run.scores[run.scores["status"] == "scored"][[*keyed, column]]
        scored["as_of"] = pd.to_datetime(scored["as_of"]).astype("datetime64[us]")
        frame = frame.merge(scored.rename(columns={column: CHURNLENS}), on=keyed, how="inner")
        missing = len(test_x) - len(frame)
        note = f"{missing} test rows not scored by churnlens" if missing else ""
    models = [CHURNLENS, *others] if run.scores is not None else others
    y = frame[label].astype(int).to_numpy()
    scores = {m: frame[m].to_numpy(float) for m in models}
    metrics = {m: point_metrics(y, p, probability=m not in RANKINGS) for m, p in scores.items()}
    boot = bootstrap_auc(frame["account_id"].to_numpy(), y, scores, reps=reps, seed=seed)
    intervals = {m: tuple(np.quantile(v, [0.025, 0.975])) for m, v in boot.items()}
    diffs = {}
    if CHURNLENS in boot:
        for m in others:
            d = boot[CHURNLENS] - boot[m]
            point = metrics[CHURNLENS]["roc_auc"] - metrics[m]["roc_auc"]
            diffs[m] = (point, *np.quantile(d, [0.025, 0.975]))
    return Result(
        world=world.name,
        rows=len(frame),
        positives=int(y.sum()),
        train_rows=len(train),
        test_start=start,
        note=note,
        metrics=metrics,
        intervals=intervals,
        diffs=diffs,
        failed=run.failed,
    )


# --- the table ------------------------------------------------------------------------------


def markdown(results: list[Result], *, reps: int) -> str:
    lines = [
        "| world (test rows, positives; baseline train rows) | model | ROC-AUC [95% CI] | "
        "PR-AUC | lift@10% | ECE | obs/exp | churnlens - model, ROC-AUC [95% CI] |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        where = f"{r.world}, test from {r.test_start} ({r.rows:,}, {r.positives}; {r.train_rows:,})"
        if r.note:
            where += f"; {r.note}"
        if r.failed:
            lines.append(f"| {where} | {CHURNLENS} | failed: {_cell(r.failed)} | | | | | |")
            where = ""
        for model in [CHURNLENS, *BASELINES, *RANKINGS]:
            if model not in r.metrics:
                continue
            m, (lo, hi) = r.metrics[model], r.intervals[model]
            diff = ""
            if model in r.diffs:
                d, dlo, dhi = r.diffs[model]
                diff = f"{d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
            lines.append(
                f"| {where} | {model} | {m['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}] | "
                f"{m['pr_auc']:.3f} | {m['lift']:.2f} | {_num(m['ece'], 4)} | "
                f"{_num(m['obs_exp'], 2)} | "
                f"{diff} |"
            )
            where = ""
    lines.append("")
    lines.append(f"Bootstrap: {reps} resamples of the accounts; ECE over 10 equal-count bins.")
    return "\n".join(lines)


def _num(value: float, digits: int) -> str:
    return "-" if np.isnan(value) else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=Path, nargs="+", required=True)
    parser.add_argument("--test-start", type=date.fromisoformat, default=None)
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/churnlens-bench-outside"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    results = []
    started = time.perf_counter()
    for directory in args.worlds:
        world = read_world(directory)
        work = args.work / directory.name
        work.mkdir(parents=True, exist_ok=True)
        print(f"{world.name} ({directory})", flush=True)
        result = evaluate_world(
            world, start=args.test_start, reps=args.reps, seed=args.seed, work=work
        )
        results.append(result)
        (work / "result.json").write_text(json.dumps(_jsonable(result), indent=2))
        if args.markdown:  # after every world: a long run's finished worlds are kept
            args.markdown.write_text(markdown(results, reps=args.reps) + "\n")
    table = markdown(results, reps=args.reps)
    print(f"\n{table}\n\n{time.perf_counter() - started:.0f} s in all")


def _jsonable(result: Result) -> dict:
    out = dict(result.__dict__)
    out["test_start"] = result.test_start.isoformat()
    return json.loads(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
