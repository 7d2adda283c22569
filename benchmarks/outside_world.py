"""What a benchmark needs to know about an outside world directory, whoever wrote it.

A world is a directory holding a DuckDB file with the churnlens input contract (``accounts``,
``contracts``, ``usage_events``) and a ground-truth label file kept apart from it. Worlds made by
``../shared/outside-worlds/make_world.sh`` are described by their ``MODEL_labels.json``; worlds
derived here (``cut_world.py``, ``make_transaction_world.py``) by a ``world.json``:

    name            the world's name in tables
    kind            "contract" (churn = the contracts end) or "transaction" (churn = inactivity)
    duckdb          the warehouse file, relative to the directory
    labels          the label Parquet file: account_id, as_of (date) and label_column
    label_column    the boolean ground-truth outcome
    horizon_days    the outcome window after as_of the labels look at
    history_start   first day of history (ISO date); data_end: the day after the last one
    churnlens       config overrides for churnlens on this world (merged into its YAML)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META = "world.json"


@dataclass(frozen=True)
class World:
    directory: Path
    name: str
    kind: str
    duckdb: Path
    labels: Path
    label_column: str
    horizon_days: int
    history_start: str
    data_end: str
    churnlens: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "duckdb": self.duckdb.name,
            "labels": self.labels.name,
            "label_column": self.label_column,
            "horizon_days": self.horizon_days,
            "history_start": self.history_start,
            "data_end": self.data_end,
            "churnlens": self.churnlens,
        }


def write_world(world: World) -> Path:
    path = world.directory / META
    path.write_text(json.dumps(world.to_json(), indent=2) + "\n")
    return path


def read_world(directory: Path | str) -> World:
    """The world in ``directory``: its ``world.json``, else the ``MODEL_labels.json`` of
    ``make_world.sh`` (churn within 30 days of the 1st of each month, the run-date labels)."""
    directory = Path(directory)
    meta_path = directory / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return World(
            directory=directory,
            name=meta["name"],
            kind=meta["kind"],
            duckdb=directory / meta["duckdb"],
            labels=directory / meta["labels"],
            label_column=meta["label_column"],
            horizon_days=int(meta["horizon_days"]),
            history_start=meta["history_start"],
            data_end=meta["data_end"],
            churnlens=meta.get("churnlens", {}),
        )
    found = sorted(directory.glob("*_labels.json"))
    if not found:
        raise SystemExit(f"{directory}: neither {META} nor a MODEL_labels.json of make_world.sh")
    meta = json.loads(found[0].read_text())
    case = meta["case"]
    seed = meta.get("conf", {}).get("random_seed", "?")
    return World(
        directory=directory,
        name=f"{case} seed {seed}",
        kind="contract",
        duckdb=directory / f"{case}.duckdb",
        labels=directory / meta["labels"]["rundate"]["file"],
        label_column="churned_within_horizon",
        horizon_days=30,
        history_start=meta["sim_start"],
        data_end=meta["sim_end"],
        # the world's churn: its active period ends within 30 days; periods merge gaps <= 7 days
        churnlens={"features": {"labels": {"horizon_days": 30, "lead_days": 0, "grace_days": 7}}},
    )
