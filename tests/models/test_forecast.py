import numpy as np
import pandas as pd
import pytest

from models.forecast import (
    LevelUncertainty,
    account_outcomes,
    backtest_forecast,
    backtest_summary,
    count_interval,
    forecast_next_period,
    level_from_matured,
    realised_outcomes,
)
from models.metrics import level_spread


def preds() -> pd.DataFrame:
    """The worked example of docs/metrics.md."""
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "segment": ["ent", "ent", "smb", "smb"],
            "arr": [1000.0, 500.0, 200.0, 300.0],
            "churn_probability": [0.1, 0.2, 0.5, 0.0],
            "expansion_probability": [0.5, 0.0, 0.1, 0.2],
            "expected_expansion_arr": [100.0, 0.0, 10.0, 60.0],
        }
    )


def test_expectations_hand_computed():
    fc = forecast_next_period(preds(), seed=1, n_sims=2000).set_index("segment")
    total = fc.loc["all"]
    assert total["starting_arr"] == 2000.0
    assert total["expected_churned_arr"] == pytest.approx(0.1 * 1000 + 0.2 * 500 + 0.5 * 200)  # 300
    assert total["expected_expansion"] == pytest.approx(170.0)
    assert total["expected_grr"] == pytest.approx((2000 - 300) / 2000)  # 0.85
    assert total["expected_ndr"] == pytest.approx((2000 - 300 + 170) / 2000)  # 0.935
    assert total["expected_logos_churned"] == pytest.approx(0.8)
    assert fc.loc["ent", "expected_churned_arr"] == pytest.approx(200.0)
    assert fc.loc["smb", "expected_ndr"] == pytest.approx((500 - 100 + 70) / 500)
    # groups add up to the total
    for col in ("starting_arr", "expected_churned_arr", "expected_expansion", "accounts"):
        assert fc.loc[["ent", "smb"], col].sum() == pytest.approx(total[col])


def test_intervals_bracket_the_expectation_and_grr_stays_below_one():
    fc = forecast_next_period(preds(), seed=3, n_sims=5000)
    for key in ("churned_arr", "expansion", "ndr", "grr"):
        assert (fc[f"{key}_lo"] <= fc[f"expected_{key}"]).all()
        assert (fc[f"expected_{key}"] <= fc[f"{key}_hi"]).all()
    assert (fc["grr_hi"] <= 1.0).all()


def test_seeded_and_reproducible():
    a = forecast_next_period(preds(), seed=7, n_sims=1000)
    b = forecast_next_period(preds(), seed=7, n_sims=1000)
    pd.testing.assert_frame_equal(a, b)


def test_certain_outcomes_give_a_point_interval():
    certain = preds().assign(churn_probability=[1.0, 0.0, 1.0, 0.0], expansion_probability=0.0)
    total = forecast_next_period(certain, by=None, seed=0, n_sims=500).iloc[0]
    assert total["churned_arr_lo"] == total["churned_arr_hi"] == 1200.0
    assert total["ndr_lo"] == total["ndr_hi"] == pytest.approx(0.4)


def test_interval_width_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {"arr": rng.lognormal(9, 0.5, n), "churn_probability": rng.uniform(0.02, 0.3, n)}
    )
    total = forecast_next_period(frame, by=None, seed=5, n_sims=4000).iloc[0]
    p, arr = frame["churn_probability"], frame["arr"]
    sd = float(np.sqrt((p * (1 - p) * arr**2).sum()))
    width = total["churned_arr_hi"] - total["churned_arr_lo"]
    assert width == pytest.approx(2 * 1.6449 * sd, rel=0.05)


def test_churn_and_expansion_are_mutually_exclusive():
    # p_churn 0.7 leaves room for only 0.3 of expansion
    out = account_outcomes(
        pd.DataFrame(
            {
                "arr": [100.0],
                "churn_probability": [0.7],
                "expansion_probability": [0.5],
                "expected_expansion_arr": [50.0],
            }
        )
    )
    assert out.loc[0, "p_expansion"] == pytest.approx(0.3)
    assert out.loc[0, "amount_expansion"] == pytest.approx(100.0)


@pytest.mark.parametrize("bad", [1.2, -0.1, np.nan])
def test_bad_probabilities_are_named(bad):
    frame = preds()
    frame.loc[2, "churn_probability"] = bad
    with pytest.raises(ValueError, match=r"predictions.churn_probability: 1 value\(s\)"):
        forecast_next_period(frame, seed=0)


def _simulated_history(n_dates: int, n_accounts: int, seed: int):
    """Past scores whose probabilities are the truth, and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(n_dates):
        run_date = pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=i)
        arr = rng.lognormal(9, 1.0, n_accounts)
        p_churn = rng.beta(1, 12, n_accounts)
        p_exp = np.minimum(rng.beta(1, 8, n_accounts), 1 - p_churn)
        uplift = arr * rng.uniform(0.1, 0.5, n_accounts)
        u = rng.random(n_accounts)
        churned = u < p_churn
        expanded = (u >= p_churn) & (u < p_churn + p_exp)
        ids = [f"acc{j}" for j in range(n_accounts)]
        preds.append(
            pd.DataFrame(
                {
                    "run_date": run_date,
                    "account_id": ids,
                    "arr": arr,
                    "churn_probability": p_churn,
                    "expansion_probability": p_exp,
                    "expected_expansion_arr": p_exp * uplift,
                }
            )
        )
        after = np.where(churned, 0.0, arr + expanded * uplift)
        labels.append(
            pd.DataFrame(
                {
                    "as_of": run_date,
                    "account_id": ids,
                    "churned": churned,
                    "arr_at_as_of": arr,
                    "arr_at_horizon": after,
                }
            )
        )
    return pd.concat(preds, ignore_index=True), pd.concat(labels, ignore_index=True)


def test_backtest_coverage_is_close_to_nominal_when_probabilities_are_true():
    past, outcomes = _simulated_history(n_dates=200, n_accounts=150, seed=11)
    bt = backtest_forecast(past, outcomes, n_sims=1000, seed=1, interval=0.9)
    summary = backtest_summary(bt).set_index("quantity")
    for quantity in ("churned_arr", "expansion", "ndr", "grr"):
        assert summary.loc[quantity, "coverage"] == pytest.approx(0.9, abs=0.06), quantity
        assert summary.loc[quantity, "run_dates"] == 200
    # unbiased: mean error within a few standard errors of zero
    churn = bt[bt["quantity"] == "churned_arr"]
    assert abs(churn["error"].mean()) < 3 * churn["error"].std() / np.sqrt(len(churn))


def test_backtest_detects_overconfident_probabilities():
    past, outcomes = _simulated_history(n_dates=40, n_accounts=400, seed=12)
    halved = past.assign(churn_probability=past["churn_probability"] / 2)
    bt = backtest_forecast(halved, outcomes, n_sims=1000, seed=1)
    churn = backtest_summary(bt).set_index("quantity").loc["churned_arr"]
    assert churn["coverage"] < 0.6  # far below the nominal 0.9
    assert churn["mean_error"] > 0  # actual churn exceeds the forecast


def test_realised_outcomes_from_labels():
    labels = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2025-01-06"] * 4),
            "account_id": [1, 2, 3, 4],
            "churned": pd.array([True, False, False, pd.NA], dtype="boolean"),
            "arr_at_as_of": [100.0, 200.0, 300.0, 400.0],
            "arr_at_horizon": [0.0, 260.0, 240.0, None],
        }
    )
    out = realised_outcomes(labels).set_index("account_id")
    assert list(out.index) == ["1", "2", "3"]  # censored row 4 dropped
    assert out["churned_arr"].tolist() == [100.0, 0.0, 0.0]
    assert out["expansion_arr"].tolist() == [0.0, 60.0, 0.0]
    assert out["contraction_arr"].tolist() == [0.0, 0.0, 60.0]


def test_backtest_actuals_hand_computed():
    past = preds().assign(run_date=pd.Timestamp("2025-01-06"))
    labels = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2025-01-06"),
            "account_id": ["a", "b", "c", "d"],
            "churned": [False, False, True, False],
            "arr_at_as_of": [1000.0, 500.0, 200.0, 300.0],
            "arr_at_horizon": [1100.0, 450.0, 0.0, 300.0],
        }
    )
    bt = backtest_forecast(past, labels, seed=0, n_sims=1000).set_index("quantity")
    assert bt.loc["churned_arr", "actual"] == 200.0
    assert bt.loc["churned_arr", "error"] == pytest.approx(200.0 - 300.0)
    assert bt.loc["grr", "actual"] == pytest.approx((2000 - 200 - 50) / 2000)
    assert bt.loc["ndr", "actual"] == pytest.approx((2000 - 250 + 100) / 2000)
    assert bt.loc["logos_churned", "covered"]


def test_exact_logo_interval_agrees_with_simulation():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"arr": np.ones(300), "churn_probability": rng.uniform(0, 0.3, 300)})
    total = forecast_next_period(frame, by=None, seed=2, n_sims=20000).iloc[0]
    # the simulated churned ARR with unit ARR is the same count
    assert abs(total["logos_churned_lo"] - total["churned_arr_lo"]) <= 1
    assert abs(total["logos_churned_hi"] - total["churned_arr_hi"]) <= 1


def test_missing_expansion_model_means_no_expansion():
    # serving writes NaN expansion columns when no expansion model is registered
    frame = preds().assign(expansion_probability=np.nan, expected_expansion_arr=np.nan)
    total = forecast_next_period(frame, by=None, seed=0, n_sims=500).iloc[0]
    assert total["expected_expansion"] == 0.0
    assert total["expected_ndr"] == pytest.approx(total["expected_grr"])


def test_realised_outcomes_from_value_columns():
    labels = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2025-01-06"),
            "account_id": ["a", "b"],
            "churned": [True, False],
            "churned_arr": [100.0, 0.0],
            "expansion_arr": [0.0, 30.0],
            "contracted_arr": [0.0, 0.0],
        }
    )
    out = realised_outcomes(labels)
    assert out["contraction_arr"].tolist() == [0.0, 0.0]
    with pytest.raises(KeyError, match="contraction_arr"):
        realised_outcomes(labels.drop(columns="contracted_arr"))


# --- level (model) uncertainty ------------------------------------------------------------------


def test_zero_level_spread_is_the_pure_bernoulli_forecast():
    plain = forecast_next_period(preds(), seed=4, n_sims=2000)
    zero = forecast_next_period(preds(), seed=4, n_sims=2000, level=LevelUncertainty())
    pd.testing.assert_frame_equal(plain, zero)


def _book(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"arr": rng.lognormal(9, 0.5, n), "churn_probability": np.full(n, 0.05)})


def test_level_spread_widens_the_interval_as_the_normal_approximation_says():
    frame, sd = _book(), 0.3
    plain = forecast_next_period(frame, by=None, seed=5, n_sims=8000).iloc[0]
    level = LevelUncertainty(churn_sd=sd)
    wide = forecast_next_period(frame, by=None, seed=5, n_sims=8000, level=level).iloc[0]
    assert wide["expected_churned_arr"] == plain["expected_churned_arr"]  # no shift: same mean
    p, arr = frame["churn_probability"], frame["arr"]
    # Var = E[Bernoulli variance] + Var(level) x E^2; the level factor is ~lognormal(0, sd^2)
    bernoulli = float((p * (1 - p) * arr**2).sum())
    level_var = float((p * arr).sum()) ** 2 * (np.exp(sd**2) - 1)
    # the level part is skewed, so compare the width loosely with the normal one
    width = wide["churned_arr_hi"] - wide["churned_arr_lo"]
    assert width == pytest.approx(2 * 1.6449 * np.sqrt(bernoulli + level_var), rel=0.08)
    assert width > 1.5 * (plain["churned_arr_hi"] - plain["churned_arr_lo"])


def test_logo_interval_under_a_level_spread_is_the_binomial_mixture():
    from scipy import integrate, stats

    p, n, sd = 0.1, 200, 0.4

    def cdf(k: int) -> float:  # P(count <= k) with the odds scaled by exp(sd z), z ~ N(0, 1)
        def inner(z: float) -> float:
            odds = p / (1 - p) * np.exp(sd * z)
            return stats.binom.cdf(k, n, odds / (1 + odds)) * stats.norm.pdf(z)

        return integrate.quad(inner, -8, 8)[0]

    cdfs = np.array([cdf(k) for k in range(81)])  # P(count <= 80) > 0.9999
    expected = (int(np.argmax(cdfs >= 0.05)), int(np.argmax(cdfs >= 0.95)))
    assert count_interval(np.full(n, p), 0.9, level_sd=sd) == expected
    assert cdfs[-1] > 0.9999
    binomial = tuple(int(k) for k in stats.binom.ppf([0.05, 0.95], n, p))
    assert count_interval(np.full(n, p), 0.9, level_sd=0.0) == binomial
    assert expected[0] < binomial[0] and expected[1] > binomial[1]


def test_simulated_and_exact_logo_intervals_agree_under_a_level_spread():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"arr": np.ones(300), "churn_probability": rng.uniform(0, 0.3, 300)})
    level = LevelUncertainty(churn_sd=0.25)
    total = forecast_next_period(frame, by=None, seed=2, n_sims=20000, level=level).iloc[0]
    assert abs(total["logos_churned_lo"] - total["churned_arr_lo"]) <= 1
    assert abs(total["logos_churned_hi"] - total["churned_arr_hi"]) <= 1


def test_a_level_shift_moves_the_expectations_by_the_odds():
    # odds x 2: p 0.1 -> 2/11, 0.2 -> 1/3, 0.5 -> 2/3, 0 stays 0
    fc = forecast_next_period(
        preds(), by=None, seed=0, n_sims=500, level=LevelUncertainty(churn_shift=np.log(2))
    )
    expected = 1000 * 2 / 11 + 500 / 3 + 200 * 2 / 3
    assert fc.loc[0, "expected_churned_arr"] == pytest.approx(expected)
    assert fc.loc[0, "expected_logos_churned"] == pytest.approx(2 / 11 + 1 / 3 + 2 / 3)


def test_expansion_level_keeps_expansion_exclusive_of_churn():
    frame = pd.DataFrame(
        {
            "arr": [100.0],
            "churn_probability": [0.6],
            "expansion_probability": [0.4],
            "expected_expansion_arr": [20.0],
        }
    )
    level = LevelUncertainty(expansion_shift=np.log(4))  # odds 2/3 -> 8/3: p 0.8, capped at 0.4
    fc = forecast_next_period(frame, by=None, seed=0, n_sims=500, level=level).iloc[0]
    assert fc["expected_expansion"] == pytest.approx(20.0)  # still 0.4 x 50


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        # date 1: O 3, E 2, V 1 -> (1 - 1) / 4 = 0; date 2: O 4 -> (4 - 1) / 4 = 0.75; tau^2 0.375
        ([1, 1, 1, 0, 1, 1, 1, 1], np.sqrt(np.log(1.375))),
        ([1, 1, 0, 0, 1, 0, 0, 1], 0.0),  # O = E on both dates: negative excess floored at 0
    ],
)
def test_level_spread_hand_computed(outcomes, expected):
    as_of = pd.to_datetime(["2025-01-06"] * 4 + ["2025-01-13"] * 4)
    assert level_spread(as_of, np.array(outcomes), np.full(8, 0.5)) == pytest.approx(expected)


def _matured(run_date: str, churned: int, n: int = 100, p: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_date": pd.Timestamp(run_date),
            "account_id": [f"a{i}" for i in range(n)],
            "arr": 1.0,
            "churn_probability": p,
            "churned": np.arange(n) < churned,
            "expansion_arr": 0.0,
        }
    )


def test_level_from_matured_hand_computed():
    prior = LevelUncertainty(churn_sd=0.2)
    # one date, E 10, V 9, 5 churned: y = ln 0.5, v = 9 / 100; weight 0.04 / 0.13
    level = level_from_matured(_matured("2025-01-06", 5), prior=prior, window_days=90)
    assert level.churn_shift == pytest.approx(0.04 / 0.13 * np.log(0.5))
    assert level.churn_sd == pytest.approx(0.2 * np.sqrt(0.09 / 0.13))
    assert level.expansion_shift == level.expansion_sd == 0.0  # no expansion spread: unchanged
    # two dates 90 days apart count as two periods: v halves; 5 + 15 churned: y = ln 1 = 0
    two = pd.concat([_matured("2025-01-06", 5), _matured("2025-04-06", 15)])
    level = level_from_matured(two, prior=prior, window_days=90)
    assert level.churn_shift == pytest.approx(0.0)
    assert level.churn_sd == pytest.approx(0.2 * np.sqrt(0.045 / 0.085))
    # no prior spread: nothing to correct
    assert level_from_matured(two, prior=LevelUncertainty(), window_days=90) == LevelUncertainty()


def _history_with_model(n_dates: int, seed: int):
    past, outcomes = _simulated_history(n_dates=n_dates, n_accounts=300, seed=seed)
    past["run_date"] = pd.Timestamp("2024-01-01") + (past["run_date"] - past["run_date"].min()) * 4
    outcomes["as_of"] = (
        pd.Timestamp("2024-01-01") + (outcomes["as_of"] - outcomes["as_of"].min()) * 4
    )
    return past.assign(churn_model="m v1", expansion_model="e v1"), outcomes


def _forecast_columns(bt: pd.DataFrame) -> pd.DataFrame:
    keep = ["run_date", "quantity", "expected", "lo", "hi", "churn_level_shift", "churn_level_sd"]
    return bt[keep].reset_index(drop=True)


def test_backtest_level_uses_no_outcome_that_had_not_matured():
    past, outcomes = _history_with_model(n_dates=5, seed=3)  # run dates 28 days apart
    kwargs = {"seed": 1, "n_sims": 500, "level_sd": {"m v1": 0.3}, "matured_after_days": 56}
    bt = backtest_forecast(past, outcomes, **kwargs)
    last = outcomes["as_of"] == outcomes["as_of"].max()
    flipped = outcomes.assign(churned=outcomes["churned"].where(~last, True))
    changed = backtest_forecast(past, flipped, **kwargs)
    # the last run date's outcomes mature after every run date: no forecast may move
    pd.testing.assert_frame_equal(_forecast_columns(bt), _forecast_columns(changed))
    first = outcomes["as_of"] == outcomes["as_of"].min()
    early = backtest_forecast(past, outcomes.assign(churned=outcomes["churned"] | first), **kwargs)
    moved = _forecast_columns(early).groupby("run_date")["churn_level_shift"].first()
    original = _forecast_columns(bt).groupby("run_date")["churn_level_shift"].first()
    # the first date matures 56 days later: the first two forecasts cannot see it, the rest do
    assert (moved.iloc[:2] == 0).all() and (original.iloc[:2] == 0).all()
    assert (moved.iloc[2:] > original.iloc[2:]).all()


def test_backtest_says_whether_level_uncertainty_was_used():
    past, outcomes = _history_with_model(n_dates=3, seed=5)
    plain = backtest_forecast(past, outcomes, seed=1, n_sims=500)
    assert not plain["level_uncertainty"].any()
    with_level = backtest_forecast(past, outcomes, seed=1, n_sims=500, level_sd={"m v1": 0.3})
    assert with_level["level_uncertainty"].all()
    assert (with_level["churn_level_sd"] == 0.3).all()
    assert (with_level["expansion_level_sd"] == 0.0).all()  # "e v1" has no fitted spread
    summary = backtest_summary(with_level).set_index("quantity")
    assert (summary["with_level_uncertainty"] == 1.0).all()
    assert (backtest_summary(plain)["with_level_uncertainty"] == 0.0).all()
    churn = with_level["quantity"] == "churned_arr"
    wider = (with_level["hi"] - with_level["lo"])[churn].to_numpy()
    assert (wider > (plain["hi"] - plain["lo"])[churn].to_numpy()).all()


def test_contraction_lowers_the_grr_forecast_exactly():
    without = forecast_next_period(preds(), by=None, seed=0, n_sims=2000).iloc[0]
    scored = preds().assign(
        contraction_probability=[0.2, 0.5, 0.0, 0.9],
        expected_contraction_arr=[40.0, 50.0, 0.0, 1000.0],  # d: the amount is capped at its ARR
    )
    fc = forecast_next_period(scored, by=None, seed=0, n_sims=2000).iloc[0]
    # amounts if contracted: 200, 100, -, min(1111, 300); d's probability stays 0.9 (room 1.0)
    contraction = 0.2 * 200 + 0.5 * 100 + 0.9 * 300  # 360
    assert fc["expected_contraction"] == pytest.approx(contraction)
    assert fc["expected_grr"] == pytest.approx((2000 - 300 - contraction) / 2000)  # 0.67
    assert without["expected_grr"] == pytest.approx(0.85)
    assert fc["expected_grr"] < without["expected_grr"]
    assert fc["grr_hi"] < without["grr_hi"] and fc["contraction_lo"] > 0


def test_backtest_reports_contraction_beside_grr():
    past = preds().assign(
        run_date=pd.Timestamp("2025-01-06"),
        contraction_probability=[0.0, 0.5, 0.0, 0.0],
        expected_contraction_arr=[0.0, 25.0, 0.0, 0.0],
    )
    labels = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2025-01-06"),
            "account_id": ["a", "b", "c", "d"],
            "churned": [False, False, True, False],
            "arr_at_as_of": [1000.0, 500.0, 200.0, 300.0],
            "arr_at_horizon": [1100.0, 450.0, 0.0, 300.0],
        }
    )
    bt = backtest_forecast(past, labels, seed=0, n_sims=1000).set_index("quantity")
    assert bt.loc["contraction", "actual"] == 50.0
    assert bt.loc["contraction", "expected"] == pytest.approx(25.0)
    assert bt.loc["grr", "expected"] == pytest.approx((2000 - 300 - 25) / 2000)
