import re
from datetime import date

import numpy as np
import pandas as pd

from features.retention import arr_movements, cohort_retention
from models.forecast import backtest_forecast, forecast_next_period
from models.health_audit import audit_health_score
from models.monitoring import MonitoringConfig, feature_drift
from serving.report import build_report, format_value

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
    assert "No monitoring threshold crossed" in html
    assert "data:image/png" not in html


def test_format_value():
    assert format_value(0.9876, "ndr") == "98.8%"
    assert format_value(1234567.8, "starting_arr") == "1,234,568"
    assert format_value(float("nan"), "ndr") == "–"
    assert format_value(pd.Timestamp("2025-01-06"), "run_date") == "2025-01-06"
    assert format_value(True, "covered") == "yes"
