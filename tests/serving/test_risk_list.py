"""Risk lists: per-CSM CSV + HTML sorted by ARR at risk, escaping, summary figures; one folder
per run swapped in whole with its manifest; formula cells neutralised, Markdown escaped, long
names cut, private file modes."""

from __future__ import annotations

import re
import stat
from dataclasses import replace
from datetime import datetime
from html import unescape

import numpy as np
import pandas as pd
import pytest

from serving.changes import week_over_week
from serving.config import ServingConfig, TierConfig
from serving.playbook import (
    RiskListConfig,
    band_edges,
    band_labels,
    next_steps,
    risk_bands,
    step_for,
)
from serving.reasons import is_lever, split_reasons
from serving.risk_list import (
    NAME_CHARS,
    ListOptions,
    _md,
    _with_bands,
    list_table,
    neutralise_formula,
    read_manifest,
    short_money,
    working_columns,
    write_risk_lists,
)
from serving.score import churn_tier, score_accounts
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


# --- one folder per run, written whole; safe to open --------------------------------------


def test_manifest_ties_the_folder_to_the_run(scored, tmp_path):
    out = tmp_path / "lists" / RUN_DATE.isoformat()
    paths = write_risk_lists(scored, pd.DataFrame(), out_dir=out, run_date=RUN_DATE)
    manifest = read_manifest(out)
    assert manifest["run_date"] == RUN_DATE.isoformat()
    assert manifest["model_versions"] == {"churn": "churn v2"}
    assert manifest["feature_snapshot_id"] == scored.feature_snapshot_id
    assert manifest["accounts"] == len(scored.predictions)
    assert {p.name for p in out.iterdir()} == {*manifest["files"], "manifest.json"}
    for owner, path in paths.csm_csv.items():
        assert manifest["files"][path.name]["rows"] == len(pd.read_csv(path))
        assert path.parent == out and paths.csm_html[owner].parent == out
    datetime.fromisoformat(manifest["written_at"])
    paths.summary_md.write_text("tampered")
    with pytest.raises(ValueError, match=r"summary\.md differs"):
        read_manifest(out)


def test_a_rerun_replaces_the_folder_whole(scored, tmp_path):
    out = tmp_path / RUN_DATE.isoformat()
    write_risk_lists(scored, pd.DataFrame(), out_dir=out, run_date=RUN_DATE)
    fewer = replace(scored, predictions=scored.predictions.assign(csm_owner="only_one"))
    write_risk_lists(fewer, pd.DataFrame(), out_dir=out, run_date=RUN_DATE)
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.startswith("risk_list_")] == [
        "risk_list_only_one.csv",
        "risk_list_only_one.html",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    read_manifest(out)


def test_a_folder_churnlens_did_not_write_is_refused(scored, tmp_path):
    (tmp_path / "thesis.docx").write_text("mine")
    with pytest.raises(ValueError, match=r"did not write \(\['thesis.docx'\]\)"):
        write_risk_lists(scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    assert (tmp_path / "thesis.docx").read_text() == "mine"


def test_leftovers_of_a_killed_write_are_removed(scored, tmp_path):
    dead = tmp_path / f".{RUN_DATE.isoformat()}.tmp-999999999-abc"
    dead.mkdir()
    (dead / "half.csv").write_text("x")
    write_risk_lists(
        scored, pd.DataFrame(), out_dir=tmp_path / RUN_DATE.isoformat(), run_date=RUN_DATE
    )
    assert not dead.exists()


def test_files_and_folders_are_private(scored, tmp_path):
    out = tmp_path / "new" / "deeper" / RUN_DATE.isoformat()
    write_risk_lists(scored, pd.DataFrame(), out_dir=out, run_date=RUN_DATE)
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper", out):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("Acme = good", "Acme = good"),
        (-5.0, -5.0),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell, written):
    assert neutralise_formula(cell) == written


def test_csv_lists_hold_no_formula(scored, tmp_path):
    frame = scored.predictions.copy()
    frame.loc[0, "name"] = "=cmd|' /C calc'!A0"
    frame.loc[1, "name"] = "@SUM(1+1)"
    hostile = replace(scored, predictions=frame)
    paths = write_risk_lists(hostile, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    cells = pd.concat([pd.read_csv(p, dtype=str) for p in paths.csm_csv.values()])
    text = cells.fillna("").to_numpy().ravel()
    assert not [c for c in text if c[:1] in ("=", "+", "@", "\t", "\r")]
    assert "'=cmd|' /C calc'!A0" in set(cells["account"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**bold** _it_", r"\*\*bold\*\* \_it\_"),
        ("[click](http://evil)", r"\[click\]\(http\://evil\)"),
        ("<img src=x>", r"\<img src\=x\>"),
        ("a | b", r"a \| b"),
        ("# Heading", r"\# Heading"),
        ("line\nbreak", "line break"),
        ("`code` ~~gone~~ ![i](j)", r"\`code\` \~\~gone\~\~ \!\[i\]\(j\)"),
        ("back\\slash", r"back\\slash"),
        (None, ""),
    ],
)
def test_markdown_text_is_escaped(text, expected):
    assert _md(text) == expected


def test_long_names_are_cut_in_lists_and_kept_whole_in_the_frame(scored, tmp_path):
    frame = scored.predictions.copy()
    frame.loc[0, "name"] = "N" * 100_000
    frame.loc[0, "csm_owner"] = "C" * 5_000
    long = replace(scored, predictions=frame)
    paths = write_risk_lists(long, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE)
    cut = "N" * (NAME_CHARS - 1) + "…"
    page = paths.csm_html["C" * 5_000].read_text()
    assert cut in page and "N" * NAME_CHARS not in page
    assert len(page) < 100_000
    assert "C" * NAME_CHARS not in page and "C" * (NAME_CHARS - 1) + "…" in page
    rows = pd.read_csv(paths.csm_csv["C" * 5_000])
    assert rows["account"].str.len().max() == NAME_CHARS
    assert "N" * NAME_CHARS not in paths.summary_html.read_text()
    assert frame.loc[0, "name"] == "N" * 100_000  # the data itself is untouched


# --- risk shown honestly: bands aligned with tiers --------------------------------------------


@pytest.mark.parametrize(
    ("probability", "band"),
    [
        (0.0, "<2%"),
        (1e-6, "<2%"),
        (0.0199, "<2%"),
        (0.02, "2–5%"),
        (0.149, "10–15%"),
        (0.15, "15–20%"),
        (0.299, "20–30%"),
        (0.30, "30–50%"),
        (0.95, ">90%"),
        (1.0, ">90%"),
    ],
)
def test_risk_is_a_band_never_a_bare_zero_or_hundred(probability, band):
    edges = ListOptions().edges  # default bands + tier thresholds 0.15 and 0.30
    assert list(edges) == [0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.50, 0.70, 0.90]
    assert risk_bands(pd.Series([probability]), edges).tolist() == [band]


def test_every_band_lies_inside_one_tier():
    tiers = TierConfig(high=0.25, medium=0.12)
    edges = band_edges([0.05, 0.2, 0.6], tiers)
    p = np.linspace(0, 1, 2001)
    tier = churn_tier(p, tiers)
    band = risk_bands(pd.Series(p), edges)
    assert band_labels(edges) == ["<5%", "5–12%", "12–20%", "20–25%", "25–60%", ">60%"]
    assert (pd.Series(tier).groupby(band.to_numpy()).nunique() == 1).all()


@pytest.mark.parametrize(
    ("arr", "probability", "shown"),
    [
        (622_000.0, 1e-6, "<$12.4k"),  # was "$1 at risk" on a red account
        (100_000.0, 0.40, "$30k–50k"),
        (80_000.0, 0.97, ">$72k"),
        (9_000.0, 0.03, "$180–450"),
        (2_500_000.0, 0.12, "$250k–375k"),
    ],
)
def test_arr_at_risk_is_the_range_of_its_band(arr, probability, shown):
    frame = pd.DataFrame({"churn_probability": [probability], "arr": [arr]})
    assert _with_bands(frame, ListOptions().edges)["arr_at_risk_range"].tolist() == [shown]


def test_short_money():
    assert [short_money(v) for v in (950, 12_400, 1_234_567, -5_000)] == [
        "$950",
        "$12.4k",
        "$1.23M",
        "-$5k",
    ]


def test_html_shows_bands_tiers_and_horizon(scored, tmp_path):
    options = ListOptions(horizon_days=90)
    paths = write_risk_lists(
        scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE, options=options
    )
    html = "".join(p.read_text() for p in paths.csm_html.values())
    assert "within the next <b>90 days</b>" in html
    bands = [unescape(b) for b in re.findall(r'<span class="band">([^<]*)</span>', html)]
    assert len(bands) == len(scored.predictions)
    assert not {"0%", "100%"} & set(bands)
    assert set(bands) <= set(band_labels(options.edges))
    cells = re.findall(r'<span class="tier tier-(\w+)">\w+</span> <span class="band">([^<]*)', html)
    assert len(cells) == len(bands)
    for tier, band in map(lambda c: (c[0], unescape(c[1])), cells):  # lower edge -> tier
        low = 0.0 if band.startswith("<") else float(band.strip(">%").split("–")[0]) / 100
        assert tier == churn_tier(np.array([low + 1e-9]), options.tiers)[0]


# --- levers vs context, the playbook ----------------------------------------------------------


def _reason(account, direction, rank, feature, category, value, sentence):
    return {
        "account_id": account,
        "target": "churn",
        "direction": direction,
        "rank": rank,
        "feature": feature,
        "category": category,
        "value": value,
        "contribution": 0.5 if direction == "raises" else -0.5,
        "sentence": sentence,
    }


REASONS = pd.DataFrame(
    [
        _reason("A", "raises", 1, "industry", "commercial", "logistics", "Industry: logistics"),
        _reason("A", "raises", 2, "nps_latest", "sentiment", None, "Latest NPS: no data"),
        _reason("A", "raises", 3, "p1_tickets_90d", "support", "4", "4 urgent (P1) tickets"),
        _reason("A", "raises", 4, "health_score", "sentiment", "35", "Health score is 35"),
        _reason("A", "raises", 5, "active_users_28d", "adoption", "3", "3 active users"),
        _reason("A", "lowers", 1, "csm_touches_90d", "engagement", "9", "9 CSM touches"),
        _reason("B", "raises", 1, "contract_term_days", "commercial", "365", "Term: 365 days"),
        _reason("B", "raises", 2, "days_since_champion_left", "relationship", None, "none"),
        _reason("C", "raises", 1, "exec_sponsor_left_90d", "relationship", "1", "Sponsor left"),
        _reason(
            "C",
            "raises",
            1,
            "tickets_90d",
            "support",
            "2",
            "2 tickets",
        ),
    ]
).iloc[:-1]  # C's second row would be a rank clash; reasons hold one feature per rank
REASONS.loc[len(REASONS)] = _reason("C", "raises", 2, "tickets_90d", "support", "2", "2 tickets")
REASONS.loc[len(REASONS)] = _reason("X", "raises", 1, "tickets_90d", "support", "2", "expansion")
REASONS.loc[len(REASONS) - 1, "target"] = "expansion"


def test_reasons_split_into_levers_context_and_what_helps():
    split = split_reasons(REASONS)
    assert sorted(split.index) == ["A", "B", "C"]  # the expansion reason is not a churn reason
    a, b, c = (split.loc[k] for k in "ABC")
    assert a["levers"] == "4 urgent (P1) tickets; 3 active users"
    assert a["context"] == "Industry: logistics; Health score is 35"
    assert a["helps"] == "9 CSM touches"
    assert (a["lever_feature"], a["lever_category"]) == ("p1_tickets_90d", "support")
    assert b["context"] == "Term: 365 days"
    assert pd.isna(b["levers"]) and pd.isna(b["lever_category"])  # "no data" is never a reason
    assert c["levers"] == "Sponsor left; 2 tickets"
    assert c["lever_features"] == "exec_sponsor_left_90d|tickets_90d"


@pytest.mark.parametrize(
    ("feature", "category", "lever"),
    [
        ("industry", "commercial", False),
        ("employees", "commercial", False),
        ("contract_term_days", "commercial", False),
        ("tenure_days", "commercial", False),
        ("days_since_first_activity", "adoption", False),
        ("health_score_change_30d", "sentiment", False),
        ("active_users_change_28d", "adoption", True),
        ("days_since_last_csm_touch", "engagement", True),
        ("champion_left_90d", "relationship", True),
        ("p1_tickets_90d", "support", True),
        ("nps_latest", "sentiment", True),
    ],
)
def test_what_counts_as_a_lever(feature, category, lever):
    assert is_lever(feature, category) is lever


def test_each_listed_account_gets_one_next_step_from_its_top_lever():
    config = RiskListConfig()
    split = split_reasons(REASONS)
    predictions = pd.DataFrame(
        {"account_id": ["A", "B", "C", "D"], "churn_tier": ["high", "medium", "high", "low"]}
    )
    steps = next_steps(predictions, split[["lever_feature", "lever_category"]], config)
    assert steps.tolist() == [
        config.playbook["support"],  # A's top lever: urgent tickets
        config.default_next_step,  # B has context only
        "Re-establish the executive sponsor",  # a feature fragment wins over "relationship"
        None,  # low risk: no step asked
    ]


def test_playbook_is_configurable_and_checked():
    config = RiskListConfig(playbook={"support": "Escalate to the support lead"})
    assert step_for("tickets_90d", "support", config) == "Escalate to the support lead"
    assert step_for("active_users_28d", "adoption", config) == config.default_next_step
    assert step_for("days_since_champion_left", "relationship", config).startswith("Find")
    with pytest.raises(ValueError, match=r"unknown lever categories \['commercial'\]"):
        RiskListConfig(playbook={"commercial": "Offer a discount"})
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        RiskListConfig(risk_bands=[0.0, 0.5])


def test_settings_load_the_playbook_from_the_default_config():
    from pipelines.config import load_settings

    settings = load_settings()
    assert settings.risk_list.playbook["adoption"].startswith("Run an adoption workshop")
    assert settings.risk_list.risk_bands == [0.02, 0.05, 0.10, 0.20, 0.50, 0.70, 0.90]


# --- working columns ---------------------------------------------------------------------------


def test_working_columns_come_from_the_feature_frame():
    features = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "as_of": pd.Timestamp("2026-11-23"),
            "days_to_next_renewal": [45.0, np.nan, 0.0],
            "days_since_last_csm_touch": [3.0, 120.0, np.nan],
            "days_since_champion_left": [63.0, np.nan, np.nan],
            "champion_left_180d": [1.0, 0.0, 0.0],
            "exec_sponsor_left_90d": [0.0, 1.0, 0.0],
        }
    )
    got = working_columns(pd.Series(["C", "A", "B", "Z"]), features)
    assert got["renewal_date"].tolist() == ["2026-11-23", "2027-01-07", None, None]
    assert got["days_to_renewal"].tolist()[:2] == [0.0, 45.0]
    assert got["last_csm_touch"].tolist() == [None, "2026-11-20", "2026-07-26", None]
    assert got["champion_recent"].tolist() == [False, True, True, False]
    assert got["champion_status"].tolist() == [
        "No departure on record",
        "Champion left 63 days ago",
        "Exec sponsor left in the last 90 days",
        "No departure on record",
    ]


def test_working_columns_without_features_are_empty_not_guessed():
    got = working_columns(pd.Series(["A"]), None, run_date=RUN_DATE)
    assert got.drop(columns="champion_recent").iloc[0].isna().all()
    assert not got["champion_recent"].any()


def test_csv_holds_the_working_columns(scored, features, tmp_path):
    frame = features.head(60).assign(
        days_to_next_renewal=30.0, days_since_last_csm_touch=7.0, champion_left_180d=0.0
    )
    paths = write_risk_lists(
        scored, pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE, features=frame
    )
    rows = pd.concat(pd.read_csv(p) for p in paths.csm_csv.values())
    for column in (
        "run_date",
        "csm_owner",
        "renewal_date",
        "days_to_renewal",
        "last_csm_touch",
        "champion_status",
        "health_color",
        "arr",
        "churn_risk",
        "arr_at_risk_range",
        "change_since_last_run",
        "risk_change_points",
        "next_step",
        "context",
    ):
        assert column in rows.columns, column
    assert set(rows["run_date"]) == {RUN_DATE.isoformat()}
    assert rows["churn_risk"].str.fullmatch(r"<2%|>90%|\d+-\d+%").all()
    assert set(rows["renewal_date"]) == {"2026-12-23"}
    assert set(rows["last_csm_touch"]) == {"2026-11-16"}
    listed = rows["risk_tier"].isin(["high", "medium"])
    assert (
        rows.loc[listed, "next_step"].notna().all() and rows.loc[~listed, "next_step"].isna().all()
    )
    assert not rows["why_at_risk"].fillna("").str.contains("no data|none on record").any()


# --- holdouts (csmloop sets ``holdout`` on the scored frame) ----------------------------------


def test_held_out_accounts_stay_off_the_csm_lists(scored, tmp_path):
    frame = scored.predictions.assign(holdout=scored.predictions.index % 4 == 1)
    held = set(frame.loc[frame["holdout"], "account_id"])
    paths = write_risk_lists(
        replace(scored, predictions=frame), pd.DataFrame(), out_dir=tmp_path, run_date=RUN_DATE
    )
    listed = pd.concat(pd.read_csv(p, dtype=str) for p in paths.csm_csv.values())
    assert len(listed) == len(frame) - len(held) and not held & set(listed["account_id"])
    pages = "".join(p.read_text() for p in paths.csm_html.values())
    assert not [a for a in held if f'id="acct-{a}"' in pages]
    arr = frame.loc[frame["holdout"], "arr"].sum()
    md = paths.summary_md.read_text()
    assert f"{len(held):,} accounts, ${arr:,.0f} ARR" in md
    assert "Held out for measurement" in paths.summary_html.read_text()


def test_no_holdout_column_means_nobody_is_held_out(scored):
    table = list_table(scored.predictions, pd.DataFrame())
    assert not table["holdout"].any()


def test_change_since_last_week_for_every_account_scored_both_times(scored):
    before = scored.predictions.head(40).assign(
        churn_probability=scored.predictions["churn_probability"].head(40) - 0.01
    )
    table = list_table(scored.predictions, pd.DataFrame(), previous=before)
    known = table["account_id"].isin(before["account_id"])
    assert table.loc[known, "risk_change"].round(6).eq(0.01).all()
    assert table.loc[~known, "risk_change"].isna().all()
    from serving.risk_list import _points

    assert [_points(v) for v in (0.012, -0.03, 0.001, None)] == [
        "▲ 1 pt",
        "▼ 3 pts",
        "no change",
        "",
    ]
