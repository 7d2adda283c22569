"""The expected ARR gain that the expansion bundle carries (models.value)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.value import (
    OVERALL,
    expected_gain,
    expected_loss,
    fit_contraction_value,
    fit_expansion_value,
)


def _rows() -> pd.DataFrame:
    # smb: two expansions (+50 on 100, +30 on 100), one flat renewal with a +2 price uplift,
    # one churn; enterprise: one expansion (+200 on 1000), one contraction (-100 on 1000).
    return pd.DataFrame(
        {
            "segment": ["smb", "smb", "smb", "smb", "ent", "ent", "ent"],
            "arr_at_as_of": [100.0, 100.0, 100.0, 100.0, 1000.0, 1000.0, 500.0],
            "arr_at_horizon": [150.0, 130.0, 102.0, 0.0, 1200.0, 900.0, 800.0],
            "expanded": pd.array([True, True, False, False, True, False, None], dtype="boolean"),
            "churned": pd.array([False, False, False, True, False, False, None], dtype="boolean"),
        }
    )


def test_ratios_are_sums_of_gains_over_sums_of_arr_shrunk_to_overall() -> None:
    value = fit_expansion_value(_rows(), prior_rows=0)
    assert value["if_expanded"]["smb"] == pytest.approx(80 / 200)
    assert value["if_expanded"]["ent"] == pytest.approx(200 / 1000)
    assert value["if_expanded"][OVERALL] == pytest.approx(280 / 1200)
    # retained without expanding: the +2 uplift counts, the contraction counts as no gain,
    # the churned and the censored (NA) rows are left out
    assert value["if_retained"]["smb"] == pytest.approx(2 / 100)
    assert value["if_retained"]["ent"] == pytest.approx(0.0)
    shrunk = fit_expansion_value(_rows(), prior_rows=2)
    expected = (2 * 0.4 + 2 * (280 / 1200)) / 4
    assert shrunk["if_expanded"]["smb"] == pytest.approx(expected)


def test_expected_gain_mixes_expansion_and_flat_renewal_and_falls_back() -> None:
    value = fit_expansion_value(_rows(), prior_rows=0)
    arr = np.array([100.0, 1000.0, 50.0])
    groups = pd.Series(["smb", "ent", "new-segment"])
    gain = expected_gain(
        arr,
        groups,
        expansion_probability=np.array([0.5, 0.1, 0.2]),
        churn_probability=np.array([0.1, 0.0, 0.0]),
        value=value,
        default_uplift=0.2,
    )
    assert gain[0] == pytest.approx(100 * (0.5 * 0.4 + 0.4 * 0.02))
    assert gain[1] == pytest.approx(1000 * (0.1 * 0.2))
    overall = value["if_expanded"][OVERALL], value["if_retained"][OVERALL]
    assert gain[2] == pytest.approx(50 * (0.2 * overall[0] + 0.8 * overall[1]))
    old_bundle = expected_gain(
        arr,
        groups,
        expansion_probability=np.array([0.5, 0.1, 0.2]),
        churn_probability=np.zeros(3),
        value={},
        default_uplift=0.2,
    )
    assert old_bundle == pytest.approx(arr * np.array([0.5, 0.1, 0.2]) * 0.2)


def test_missing_label_columns_are_named() -> None:
    with pytest.raises(ValueError, match="arr_at_horizon"):
        fit_expansion_value(_rows().drop(columns="arr_at_horizon"))


def test_contraction_ratios_and_expected_loss_hand_computed() -> None:
    rows = pd.DataFrame(
        {
            "segment": ["smb", "smb", "smb", "ent"],
            "arr_at_as_of": [100.0, 100.0, 100.0, 1000.0],
            "arr_at_horizon": [60.0, 97.0, 0.0, 800.0],
            "contracted": pd.array([True, False, False, True], dtype="boolean"),
            "churned": pd.array([False, False, True, False], dtype="boolean"),
        }
    )
    value = fit_contraction_value(rows, prior_rows=0)
    assert value["if_contracted"]["smb"] == pytest.approx(40 / 100)
    assert value["if_contracted"][OVERALL] == pytest.approx(240 / 1100)
    assert value["if_retained"]["smb"] == pytest.approx(3 / 100)  # a drop below the threshold
    loss = expected_loss(
        np.array([100.0, 1000.0]),
        pd.Series(["smb", "ent"]),
        contraction_probability=np.array([0.5, 0.1]),
        churn_probability=np.array([0.2, 0.0]),
        value=value,
    )
    # smb: 100 x (0.5 x 0.4 + 0.3 x 0.03); ent: 1000 x (0.1 x 0.2 + 0.9 x overall retained 3/100)
    np.testing.assert_allclose(loss, [100 * (0.2 + 0.009), 1000 * (0.02 + 0.9 * 0.03)])
