"""The look-ahead guard: a model must not score a date that precedes the data it learnt from.

A model trained with data up to its training run date has seen outcomes that happened after any
earlier date. Scoring such a date (a backfill, a re-run, ``predict`` at a past ``as_of``) would
leak the future into the scores and make any evaluation of them optimistic.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

__all__ = ["LookaheadError", "check_lookahead", "data_end"]


class LookaheadError(ValueError):
    """The model's training data end after the date to be scored."""


def data_end(bundle: Any) -> date:
    """The last day the model's training data describe: the training run's run date
    (``params["data_end"]``); bundles that predate it fall back to their last training ``as_of``."""
    recorded = bundle.params.get("data_end")
    if recorded:
        return date.fromisoformat(str(recorded)[:10])
    end = bundle.train_window[1]
    return end.date() if isinstance(end, datetime) else end


def check_lookahead(bundle: Any, run_date: date, *, allow: bool) -> None:
    """Refuse to score ``run_date`` with a model whose training data end after it, unless
    ``allow`` (the user's ``--allow-lookahead``) says the look-ahead is intended."""
    end = data_end(bundle)
    if allow or end <= run_date:
        return
    raise LookaheadError(
        f"the {bundle.target} model was trained on data up to {end.isoformat()}, after the run "
        f"date {run_date.isoformat()}: its scores for that date would see the future. Score with "
        "a model trained on or before the run date, or pass --allow-lookahead "
        "(allow_lookahead=True) if that is intended"
    )
