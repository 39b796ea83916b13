"""Competition scores in the M3 convention: per group, series-weighted and step-weighted overall."""
import pandas as pd
import pytest

from mambatune.domains.timeseries.competition import PUBLISHED_THETA, competition_report, group_scores
from mambatune.domains.timeseries.evaluation import Evaluation


def evaluation(smape: list[float], mase: list[float]) -> Evaluation:
    return Evaluation({}, pd.DataFrame({"item_id": range(len(smape)), "sMAPE": smape, "MASE": mase}))


def test_series_weighted_and_step_weighted_means():
    scores = group_scores({"yearly": evaluation([10.0, 20.0], [1.0, 2.0]), "monthly": evaluation([40.0], [4.0])},
                          {"yearly": 6, "monthly": 18})
    assert list(scores) == ["yearly", "monthly", "all"]
    assert scores["yearly"].sMAPE == 15.0 and scores["yearly"].sMAPE_steps == 15.0
    assert scores["all"].series == 3
    assert scores["all"].sMAPE == pytest.approx(70 / 3)                      # every series once
    assert scores["all"].sMAPE_steps == pytest.approx((60 + 120 + 720) / 30)  # every forecast step once
    assert scores["all"].MASE == pytest.approx(7 / 3)


def test_report_prints_the_published_theta_beside_ours():
    scores = {"mamba": group_scores({"monthly": evaluation([12.0], [0.9])}, {"monthly": 18}),
              "Theta": group_scores({"monthly": evaluation([14.0], [1.0])}, {"monthly": 18})}
    table = competition_report(scores, "m3", complete=False)
    assert "| mamba | 12.00 | 0.900 | 12.00 | 0.900 | 12.00 |" in table
    assert "Theta, published (M3 competition): all series, not comparable | 13.85 | – | 13.01 |" in table
    assert PUBLISHED_THETA["m3"]["all"] == 13.01
    assert "published" not in competition_report(scores, "m1")
