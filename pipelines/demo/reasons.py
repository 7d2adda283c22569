"""Stated churn reasons of the demo world: what churned customers say in exit interviews and
what the CRM's loss reason field holds, drawn from each churn's true primary driver with the
noise real interviews have.

A churn gets a recorded reason with probability 0.85 (high-touch: a CSM holds the exit call)
or 0.55 (tech-touch: a loss reason typed into the CRM, when anyone does). A recorded reason is
the true driver's category, except that 10 % say nothing usable (``other``) and 12 % name a
wrong category (a polite "budget" for a product that was never adopted, and the like). Churns
the truth calls ``noise`` (no driver stood out) are explained by causes the product data cannot
see: product fit, a competitor, a business change, or support. The reason is recorded between
four weeks before the contract ends (the decision) and four weeks after; one recorded on or
after the run date does not exist yet and is not exported.

Drawn from its own random stream (``[seed, 3, block]``), so every other demo table is the same
with or without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.demo.world import Accounts, Calendar

TRUE_DRIVER_TO_STATED: dict[str, str] = {
    "low_value": "adoption",
    "mandated_shallow": "adoption",
    "champion_loss": "relationship",
    "exec_sponsor_loss": "relationship",
    "budget_cut": "budget",
}
"""The stated category an honest interview gives for each primary driver of the truth."""

_UNSEEN = ("product_fit", "competitor", "business_change", "support")
_UNSEEN_P = (0.35, 0.3, 0.2, 0.15)
_STATED = ("adoption", "relationship", "support", "budget", "product_fit", "competitor",
           "business_change")  # fmt: skip
_TEXTS: dict[str, tuple[str, ...]] = {
    "adoption": ("The team never really used it beyond logging in.",
                 "Rollout stalled after the pilot; we did not see the value.",
                 "Only a couple of people used the reports."),
    "relationship": ("Our sponsor for the tool left the company.",
                     "New leadership did not know why we bought it.",
                     "The admin who drove adoption moved on."),
    "support": ("Too many open bugs and slow answers from support.",
                "Two outages in a quarter cost us a customer demo."),
    "budget": ("Budget cuts across the department.",
               "Cost reduction programme: all tools under review.",
               "Price was too high for what we use."),
    "product_fit": ("Missing the integrations we need.", "Did not fit our workflow."),
    "competitor": ("Moved to a competitor bundled with our CRM.",
                   "Chose a cheaper alternative."),
    "business_change": ("We were acquired; the parent company has its own tool.",
                        "The project this was bought for ended."),
    "other": ("No reason given.", "Declined the exit call.", "See email thread."),
}  # fmt: skip


def stated_reasons(
    rng: np.random.Generator, renewals: pd.DataFrame, acc: Accounts, cal: Calendar
) -> pd.DataFrame:
    """One row per churn that has a recorded reason: ``pos``, ``t`` (day offset of
    ``recorded_at``), ``reason_category``, ``reason_text``. ``renewals`` are the block's renewal
    decisions (``pos``, ``end_day``, ``decision``, ``primary_driver``)."""
    if "decision" not in renewals.columns:  # a block with no contract end yet
        renewals = pd.DataFrame({"pos": [], "end_day": [], "decision": [], "primary_driver": []})
    churns = renewals[renewals["decision"] == "churn"]
    n = len(churns)
    pos = churns["pos"].to_numpy()
    driver = churns["primary_driver"].to_numpy(dtype=object)
    honest = np.array([TRUE_DRIVER_TO_STATED.get(d, "") for d in driver], dtype=object)
    unseen = np.array(_UNSEEN, dtype=object)[rng.choice(len(_UNSEEN), n, p=_UNSEEN_P)]
    stated = np.where(honest == "", unseen, honest)
    noise = rng.random(n)
    wrong = np.array(_STATED, dtype=object)[rng.integers(0, len(_STATED) - 1, n)]
    wrong = np.where(wrong == stated, _STATED[-1], wrong)  # never the true one by accident
    stated = np.where(noise < 0.10, "other", np.where(noise < 0.22, wrong, stated))
    recorded = rng.random(n) < np.where(acc.high_touch[pos], 0.85, 0.55)
    t = churns["end_day"].to_numpy(dtype=float) - 28.0 + rng.uniform(0, 56, n)
    pick = rng.random(n)
    texts = np.array([_TEXTS[s][int(p * len(_TEXTS[s]))] for s, p in zip(stated, pick,
                                                                          strict=True)],
                     dtype=object)  # fmt: skip
    keep = recorded & (t < cal.horizon)
    out = pd.DataFrame({
        "pos": pos[keep],
        "t": t[keep],
        "reason_category": stated[keep].astype(object),
        "reason_text": texts[keep],
    })  # fmt: skip
    return out.sort_values(["pos", "t"], kind="stable").reset_index(drop=True)
