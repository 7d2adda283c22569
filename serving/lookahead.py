"""The look-ahead guard: a model must not score a date that precedes the data it learnt from.

A model trained with data up to its training run date has seen outcomes that happened after any
earlier date. Scoring such a date (a backfill, a re-run, ``predict`` at a past ``as_of``) would
leak the future into the scores and make any evaluation of them optimistic. Weekly scoring,
backfill and ``predict`` all ask :func:`check_lookahead`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["LookaheadError", "check_lookahead", "data_end"]


class LookaheadError(ValueError):
    """The model's training data end after the date to be scored."""


def data_end(bundle: Any) -> date:
    """The last day the model's training data describe: the training run's run date
    (``params["data_end"]``). Bundles that predate it fall back to their last training
    ``as_of`` plus the label gap (``params["gap_days"]``: its labels looked that far ahead),
    else to the last training ``as_of``."""
    recorded = bundle.params.get("data_end")
    if recorded:
        return date.fromisoformat(str(recorded)[:10])
    end = bundle.train_window[1]
    end = end.date() if isinstance(end, datetime) else end
    gap = bundle.params.get("gap_days")
    return end + timedelta(days=int(gap)) if gap is not None else end


def check_lookahead(bundle: Any, run_date: date, *, allow: bool, name: str | None = None) -> None:
    """Refuse to score ``run_date`` with a model whose training data end after it, unless
    ``allow`` (the user's ``--allow-lookahead``) says the look-ahead is intended. The same day
    is fine: a model trained on a run date scores that run date's 00:00. ``name`` names the
    model in the message (default: its target)."""
    end = data_end(bundle)
    if allow or end <= run_date:
        return
    who = name or f"the {bundle.target} model"
    raise LookaheadError(
        f"{who} was trained on data up to {end.isoformat()}, after the run date "
        f"{run_date.isoformat()}: its scores for that date would see the future. Score with a "
        "model trained on or before that date (--model-version), or pass --allow-lookahead "
        "(allow_lookahead=True) if that is intended"
    )
