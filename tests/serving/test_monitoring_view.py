"""HTML fragments of the monitoring part of the report (serving.monitoring_view)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.monitoring_view import (
    GLOSSARY,
    drift_html,
    estimate_html,
    glossary_html,
    volumes_html,
)


def _drift() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": ["events_7d", "seat_utilization", "arr", "tenure_days"],
            "status": ["alert", "warn", "ok", "excluded"],
            "psi": [3.2, 0.12, 0.01, 0.9],
            "missing_train": [0.0, 0.1, 0.0, 0.0],
            "missing_current": [0.0, 0.25, 0.0, 0.0],
        }
    )


def test_drift_reads_as_a_sentence_with_the_moved_features_and_the_measured_only():
    out = drift_html(
        _drift(), "against churnlens-churn v2's training window 2025-01-06..2026-03-02"
    )
    assert out.startswith(
        "<p>2 of 4 features moved since the model's training window (1 clearly, 1 slightly)"
    )
    assert "needs attention" in out and "worth a look" in out
    assert "<code>arr</code>" not in out  # fine features are not listed
    assert (
        "Measured only (drift by construction or excluded): <code>tenure_days</code> (PSI 0.90)"
        in out
    )
    assert "10% &rarr; 25%" in out


def test_a_model_without_reference_shows_the_note_and_text_is_escaped():
    assert drift_html(None, "v1 has <no> reference") == "<p>v1 has &lt;no&gt; reference</p>"


def test_a_broken_source_is_named_first():
    volumes = pd.DataFrame(
        {
            "source": ["usage_events", "engagement"],
            "status": ["alert", "ok"],
            "rows_last_7d": [0.0, 46.0],
            "rows_typical": [1266.0, 50.0],
            "accounts_last_7d": [0.0, 35.0],
            "note": ["0 rows in the last 7 days against 1,266 in a typical week", ""],
        }
    )
    out = volumes_html(volumes)
    assert out.startswith(
        "<p>Probably broken (far fewer rows than in a typical week): <b>usage_events</b>."
    )
    assert "<td>1,266</td>" in out


def test_the_estimate_sits_beside_the_realised_figure_once_matured():
    estimate = pd.DataFrame(
        {
            "metric": ["roc_auc", "churners"],
            "expected": [0.81, 12.4],
            "lower": [0.74, 6.0],
            "upper": [0.87, 19.0],
        }
    )
    comparison = estimate.assign(
        run_date=pd.Timestamp("2026-01-05"), realised=[0.79, np.nan], within_interval=[True, None]
    )
    out = estimate_html(estimate, comparison)
    assert "<td>ROC-AUC</td><td>0.810</td><td>0.740 to 0.870</td>" in out
    assert "<td>churned accounts</td><td>12</td><td>6 to 19</td>" in out
    assert "Of 1 estimates whose outcomes have matured, 1 held the realised figure inside" in out
    assert "<td>2026-01-05</td><td>ROC-AUC</td>" in out


def test_every_term_is_glossed():
    out = glossary_html()
    assert all(f"<dt>{term}</dt>" in out for term in GLOSSARY)
    assert "PSI" in GLOSSARY and "ECE" in GLOSSARY
