"""Risk lists: per-CSM CSV + HTML sorted by ARR at risk, escaping, summary figures; one folder
per run swapped in whole with its manifest; formula cells neutralised, Markdown escaped, long
names cut, private file modes."""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import datetime

import pandas as pd
import pytest

from serving.changes import week_over_week
from serving.config import ServingConfig
from serving.risk_list import (
    NAME_CHARS,
    _md,
    neutralise_formula,
    read_manifest,
    write_risk_lists,
)
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
