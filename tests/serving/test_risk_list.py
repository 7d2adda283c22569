"""Risk lists: per-CSM CSV + HTML sorted by ARR at risk, escaping, summary figures."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from serving.changes import week_over_week
from serving.config import ServingConfig
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from tests.serving.conftest import CATALOG, RUN_DATE

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def scored(features, churn_bundle, expansion_bundle):
    frame = features.head(60).copy()
    frame.loc[0, "name"] = EVIL
    frame.loc[1, "csm_owner"] = "<b>boss</b>"
    return score_accounts(
        frame,
        churn=churn_bundle,
        expansion=expansion_bundle,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )


def test_lists_per_csm_sorted_by_arr_at_risk(scored, tmp_path):
    paths = write_risk_lists(scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    owners = set(scored.predictions["csm_owner"])
    assert set(paths.csm_csv) == owners == set(paths.csm_html)
    total = 0
    for path in paths.csm_csv.values():
        rows = pd.read_csv(path)
        total += len(rows)
        assert rows["arr_at_risk"].is_monotonic_decreasing
        assert {"why_at_risk", "what_helps", "green_churn", "expansion_quadrant"} <= set(rows)
        assert path.parent == tmp_path and "/" not in path.name.replace(".csv", "")
    assert total == len(scored.predictions)


def test_html_escapes_names_and_is_self_contained(scored, tmp_path):
    paths = write_risk_lists(scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    owner = scored.predictions.loc[0, "csm_owner"]
    html = paths.csm_html[owner].read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    summary = paths.summary_html.read_text()
    assert "<b>boss</b>" not in summary and "&lt;b&gt;boss&lt;/b&gt;" in summary
    for page in (html, summary):
        assert page.count("<svg") == 2
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "<script src" not in page and "<link" not in page
    assert "Green churn" in html and "Expansion targets" in html


def test_summary_reports_green_churn_and_expansion(scored, tmp_path):
    paths = write_risk_lists(scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    p = scored.predictions
    green_arr = p.loc[p["green_churn"], "arr"].sum()
    assert green_arr > 0
    md = paths.summary_md.read_text()
    assert f"**${green_arr:,.0f}** ARR" in md
    assert EVIL not in md
    by = pd.read_csv(paths.summary_csv)
    assert by["arr_at_risk"].sum() == pytest.approx(p["arr_at_risk"].sum())
    assert set(by["churn_tier"]) <= {"high", "medium", "low"}


def test_movers_reach_the_lists(scored, tmp_path):
    before = replace(scored).predictions.assign(
        churn_probability=0.01, churn_tier="low", churn_reason_features=""
    )
    changes = week_over_week(scored.predictions, before, config=ServingConfig())
    paths = write_risk_lists(scored, changes, out_dir=tmp_path, run_date=RUN_DATE)
    movers = pd.read_csv(paths.movers_csv)
    assert len(movers) == min(25, len(changes)) and len(movers) > 0
    assert "new on the list" in paths.summary_md.read_text()


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0, "0%"), (0.001, "<1%"), (0.004, "<1%"), (0.006, "1%"), (0.356, "36%"), (None, "–")],
)
def test_percentages_never_round_a_real_risk_to_zero(value, shown):
    from serving.risk_list import _pct

    assert _pct(value) == shown
