import re
from datetime import date

import numpy as np
import pandas as pd

from features.retention import arr_movements, cohort_retention
from models.forecast import backtest_forecast, forecast_next_period
from models.health_audit import audit_health_score
from models.monitoring import MonitoringConfig, feature_drift
from pipelines.report.sections import (
    COLUMN_LABELS,
    GLOSSARY,
    MonitoringView,
    bias_sentence,
    build_report,
    format_value,
)

EVIL = "<script>alert(1)</script>"


def contracts() -> pd.DataFrame:
    rows = [
        ("a", "2023-01-01", "2024-01-01", 100.0, "ent"),
        ("a", "2024-01-01", "2025-01-01", 130.0, "ent"),
        ("b", "2023-02-01", "2024-08-01", 200.0, EVIL),
        ("c", "2023-06-01", "2025-06-01", 50.0, "smb"),
    ]
    frame = pd.DataFrame(rows, columns=["account_id", "start_date", "end_date", "arr", "segment"])
    return frame.assign(
        start_date=pd.to_datetime(frame["start_date"]), end_date=pd.to_datetime(frame["end_date"])
    )


def inputs() -> dict:
    rng = np.random.default_rng(0)
    preds = pd.DataFrame(
        {
            "run_date": pd.Timestamp("2024-06-03"),
            "account_id": ["a", "b", "c"],
            "segment": ["ent", EVIL, "smb"],
            "arr": [130.0, 200.0, 50.0],
            "churn_probability": [0.1, 0.6, 0.2],
            "health_score": [80.0, 75.0, 30.0],
            "health_color": ["green", "green", "red"],
        }
    )
    labels = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2024-06-03"),
            "account_id": ["a", "b", "c"],
            "churned": [False, True, False],
            "arr_at_as_of": [130.0, 200.0, 50.0],
            "arr_at_horizon": [130.0, 0.0, 50.0],
        }
    )
    train = pd.DataFrame({"usage": rng.normal(size=200), "plan": ["x"] * 200})
    current = pd.DataFrame({"usage": rng.normal(2, 1, size=200), EVIL: 1.0, "plan": ["x"] * 200})
    drift = feature_drift(
        train.assign(**{EVIL: 1.0}),
        current,
        feature_names=["usage", EVIL, "plan"],
        thresholds=MonitoringConfig(),
    )
    return {
        "retention": arr_movements(
            contracts(), period="quarter", start=date(2023, 1, 1), end=date(2025, 1, 1), rolling=4
        ),
        "cohorts": cohort_retention(contracts(), end=date(2025, 1, 1)),
        "forecast": forecast_next_period(preds, seed=0, n_sims=500),
        "forecast_backtest": backtest_forecast(preds, labels, seed=0, n_sims=500),
        "drift": drift,
        "realised": pd.DataFrame(
            {
                "run_date": pd.to_datetime(["2024-01-01", "2024-02-01"]),
                "accounts": [3, 3],
                "churners": [1, 1],
                "auc": [0.8, 0.7],
                "brier": [0.1, 0.12],
                "ece": [0.02, 0.03],
            }
        ),
        "audit": audit_health_score(preds.merge(labels[["account_id", "churned"]])),
    }


def test_report_is_self_contained_and_escaped(tmp_path):
    out = build_report(
        **inputs(), out_path=tmp_path / "r" / "report.html", run_date=date(2024, 6, 3)
    )
    html = out.read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html  # no script at all: the page is static
    # NDR over time, cohort heatmap, forecast, backtest, realised AUC
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)) == 5
    assert "monitoring threshold(s) crossed" in html and "feature drift alert: usage" in html
    for anchor in ("retention", "cohorts", "forecast", "drift", "realised", "health-audit"):
        assert f'id="{anchor}"' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched when opened


def test_report_with_nothing_available_says_so(tmp_path):
    out = build_report(
        retention=None,
        cohorts=None,
        forecast=None,
        forecast_backtest=None,
        drift=None,
        realised=None,
        audit=None,
        out_path=tmp_path / "empty.html",
        run_date=date(2024, 6, 3),
    )
    html = out.read_text()
    assert "No matured run date yet" in html
    assert "no health_scores table" in html
    assert "no monitoring threshold crossed" in html
    assert "data:image/png" not in html


def test_format_value():
    assert format_value(0.9876, "ndr") == "98.8%"
    assert format_value(1234567.8, "starting_arr") == "$1.23M"
    assert format_value(-35400.0, "expected_churned_arr") == "−$35.4k"
    assert format_value(350400.0, "contraction") == "$350k"
    assert format_value(820.4, "new_arr") == "$820"
    assert format_value(0.0314, "psi") == "0.031"
    assert format_value(float("nan"), "ndr") == "–"
    assert format_value(pd.Timestamp("2025-01-06"), "run_date") == "2025-01-06"
    assert format_value(True, "covered") == "yes"


def _backtest(actual: list[float], covered: list[bool], quantity: str = "churned_arr"):
    return pd.DataFrame(
        {
            "run_date": pd.date_range("2025-01-06", periods=len(actual), freq="28D"),
            "quantity": quantity,
            "expected": 100.0 if quantity == "churned_arr" else 0.9,
            "actual": actual,
            "covered": covered,
        }
    )


def test_bias_sentence_states_direction_size_and_coverage():
    bt = _backtest([150_000.0, 130_000.0, 90.0], [True, False, True])
    bt["expected"] = 100_000.0
    assert bias_sentence(bt, interval=0.9) == (
        "Actual churned ARR exceeded the forecast on 2 of 3 past dates, by $40.0k on average; "
        "the 90% interval held it on 2 of 3."
    )
    grr = _backtest([0.88, 0.86, 0.91], [True, True, True], quantity="grr")
    assert bias_sentence(grr, "grr") == (
        "Actual GRR fell short of the forecast on 2 of 3 past dates, by 3.0 percentage points "
        "on average; the interval held it on 3 of 3."
    )
    even = _backtest([110.0, 90.0], [True, True])
    assert "above the forecast on 1 and below it on 1 of 2" in bias_sentence(even)


def test_board_headline_is_trailing_12_months_and_early_quarters_are_greyed(tmp_path):
    from features.retention import detect_history_start, mark_history
    from tests.features.test_retention import survivors_book

    book = survivors_book()
    start = detect_history_start(book)
    quarters = mark_history(
        arr_movements(book, period="quarter", start=date(2023, 1, 1), end=date(2025, 4, 1)),
        start,
    )
    ttm = arr_movements(book, period="ttm", start=start, end=date(2025, 4, 1))
    out = build_report(
        retention=quarters,
        ttm=ttm,
        history_start=start,
        cohorts=cohort_retention(book, end=date(2025, 4, 1), start=start),
        forecast=None,
        forecast_backtest=None,
        drift=None,
        realised=None,
        audit=None,
        out_path=tmp_path / "board.html",
        run_date=date(2025, 4, 1),
    )
    html = out.read_text()
    latest = ttm.iloc[-1]
    headline = re.search(
        r'kpi main"><span class="label">Net revenue retention</span><b>([^<]+)', html
    )
    assert headline and headline.group(1) == f"{latest['ndr']:.1%}"
    assert "trailing 12 months" in html and "quarter over quarter" in html
    # 2024Q1 .. 2024Q4 shown of the latest 8 quarters; 2024Q1 starts before 15 Feb 2024: greyed
    assert (~quarters.tail(8)["complete_history"]).sum() == 4  # 2023Q2 .. 2024Q1
    assert html.count('class="status-muted"') == 4
    assert "NDR 2025Q1" in html  # the quarterly card names its quarter
    assert "starting_arr" not in html and "ARR at start" in html
    for term in ("NDR", "GRR", "PSI", "ECE", "ARR", "CSM"):
        assert any(t.startswith(term) for t, _ in GLOSSARY), term


def test_monitoring_view_renders_its_parts_and_alerts_stay_in_their_section(tmp_path):
    checks = pd.DataFrame(
        {"check": ["accounts with usage"], "value": [0.0], "expected": [0.97], "status": ["alert"]}
    )
    view = MonitoringView(checks=checks, warnings=["usage_events: no rows this week"])
    out = build_report(
        retention=None,
        cohorts=None,
        forecast=None,
        forecast_backtest=None,
        drift=None,
        realised=None,
        audit=None,
        monitoring=view,
        out_path=tmp_path / "m.html",
        run_date=date(2024, 6, 3),
    )
    html = out.read_text()
    assert "usage_events: no rows this week" in html
    assert html.index("usage_events: no rows") > html.index('id="drift"')
    assert "1 monitoring check(s) for the data team" in html
    assert "Data volume and coverage" in html and 'class="status-alert"' in html
    assert set(COLUMN_LABELS.values()).isdisjoint({"starting_arr", "ndr"})
