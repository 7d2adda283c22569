"""The HTML list's filters in a real browser: headless Chromium loads a CSM list with filters
set in the address (``#tier=high&renewal=120``), runs the page's own script, and the rows it
hides are exactly those the filters exclude (checked against the list's CSV)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.config import ServingConfig
from serving.risk_list import ListOptions, write_risk_lists
from serving.score import score_accounts
from tests.serving.conftest import CATALOG, RUN_DATE

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)"
)
_ROW = re.compile(r'<tr id="acct-([^"]+)"([^>]*)>')


@pytest.fixture(scope="module")
def written(features, churn_bundle, expansion_bundle, tmp_path_factory):
    rng = np.random.default_rng(3)
    frame = features.head(120).assign(
        days_to_next_renewal=rng.integers(0, 365, 120).astype(float),
        days_since_last_csm_touch=rng.integers(0, 90, 120).astype(float),
    )
    frame.loc[5, "days_to_next_renewal"] = np.nan  # no renewal date: never "within N days"
    scored = score_accounts(
        frame,
        churn=churn_bundle,
        expansion=expansion_bundle,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )
    out = tmp_path_factory.mktemp("lists") / RUN_DATE.isoformat()
    paths = write_risk_lists(
        scored,
        pd.DataFrame(),
        out_dir=out,
        run_date=RUN_DATE,
        features=frame,
        options=ListOptions(horizon_days=90),
    )
    owner = max(paths.csm_csv, key=lambda o: len(pd.read_csv(paths.csm_csv[o])))
    return paths.csm_html[owner], pd.read_csv(paths.csm_csv[owner], dtype={"account_id": str})


def _visible(page: Path, fragment: str) -> tuple[set[str], set[str], str]:
    """Rows shown and hidden after the page's script ran with ``fragment`` in the address."""
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"{page.as_uri()}#{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    shown, hidden = set(), set()
    for account, attributes in _ROW.findall(dom):
        (hidden if re.search(r"\shidden(=|\s|$)", attributes) else shown).add(account)
    status = re.search(r'<p id="shown"[^>]*>([^<]*)</p>', dom).group(1)
    return shown, hidden, status


def _expected(rows: pd.DataFrame, case: str) -> set[str]:
    days = rows["days_to_renewal"]
    keep = {
        "tier=high&renewal=120": (rows["risk_tier"] == "high") & (days <= 120),
        "segment=smb&tier=low": (rows["segment"] == "smb") & (rows["risk_tier"] == "low"),
        "green=1": rows["green_churn"].astype(bool),
        "": pd.Series(True, index=rows.index),
    }[case]
    return set(rows.loc[keep, "account_id"])


@pytest.mark.parametrize("case", ["tier=high&renewal=120", "segment=smb&tier=low", "green=1", ""])
def test_filters_in_the_address_hide_exactly_the_excluded_rows(written, case):
    page, rows = written
    shown, hidden, status = _visible(page, case)
    expected = _expected(rows, case)
    assert shown | hidden == set(rows["account_id"])
    assert shown == expected
    assert len(expected) > 0
    if case:
        assert len(hidden) > 0
    assert status == f"Showing {len(expected)} of {len(rows)} accounts."


def test_text_search_matches_ids_and_reasons(written):
    page, rows = written
    account = rows["account_id"].iloc[3]
    shown, _, _ = _visible(page, f"q={account}")  # any case
    assert shown == {account}
    text = rows[
        [
            "account",
            "account_id",
            "segment",
            "why_at_risk",
            "context",
            "next_step",
            "champion_status",
        ]
    ].fillna("")
    haystack = text.agg(" ".join, axis=1).str.replace("_", " ").str.lower()
    shown, _, _ = _visible(page, "q=URGENT+tickets")
    expected = set(
        rows.loc[haystack.str.contains("urgent") & haystack.str.contains("tickets"), "account_id"]
    )
    assert shown == expected and 0 < len(expected) < len(rows)
