"""RFWP Figures 1-12 from the paper's scores (rfwp.tasks.atari.figures), our runs as tables (sweeps) and claim C6's
rule (claims): the relative improvement on hand cases, the text's counts from Tables 7 and 8, one bar per game, the
tables of hand-made records, and the rule's three verdicts on hand-made scores. No Atari game is played."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rfwp.tasks.atari import claims, figures, sweeps  # noqa: E402
from rfwp.train import RunRecord  # noqa: E402

r = figures.relative_improvement


def test_relative_improvement_on_hand_cases():
    """r = (ours − baseline) / max(|ours|, |baseline|): its value, sign, antisymmetry, scale, zeros, NaN."""
    assert r(150, 100) == pytest.approx(50 / 150)
    assert r(100, 150) == pytest.approx(-50 / 150) == -r(150, 100)
    assert r(300, 200) == pytest.approx(r(150, 100))                  # scale-free
    assert r(0, 0) == 0.0 and r(21, 21) == 0.0
    assert r(5, 0) == 1.0 and r(0, 5) == -1.0                         # a zero baseline is no division by zero
    assert r(-20, -21) == pytest.approx(1 / 21) and r(-21, -20) < 0    # Pong: higher is better, also below 0
    assert r(10, -10) == 2.0                                          # opposite signs: beyond 100%
    assert math.isnan(r(float("nan"), 3.0))
    np.testing.assert_allclose(r(pd.Series([2.0, 1.0, 0.0]), pd.Series([1.0, 2.0, 0.0])), [0.5, -0.5, 0.0])


def test_figure_12_tells_the_formula_from_the_baseline_relative_one():
    """App. C's "16 games within 50%" (Figure 12): ours gives 16, (ours − baseline)/|baseline| 15 (Up'n Down)."""
    bars = figures.paper_improvements("F12").set_index("game")
    assert int((bars.improvement.abs() <= 0.5).sum()) == 16
    relative_to_baseline = (bars.ours - bars.baseline) / bars.baseline.abs()
    assert int((relative_to_baseline.abs() <= 0.5).sum()) == 15
    assert relative_to_baseline["Up'n Down"] > 0.5 >= bars.improvement["Up'n Down"]


def test_the_text_counts_of_figures_1_and_2_follow_from_tables_7_and_8():
    counts = figures.derived_counts().set_index("statement")
    for ident in ("F1a", "F1b", "F1c", "F2a", "F2b", "F2c", "F2d", "F2e"):
        assert counts.match[ident], ident
    assert counts.loc[["F1a", "F1b", "F1c", "F2c", "F2d"], "derived"].tolist() == [12, 3, 5, 6, 9]


def test_only_figure_4s_feedforward_count_and_figure_10s_gaps_disagree_with_the_text():
    counts = figures.derived_counts()
    assert sorted(counts.statement[counts.match == False]) == ["F10a", "F4b"]  # noqa: E712 (None: no number)
    assert counts.set_index("statement").loc[["F4b", "F10a"], "derived"].tolist() == [5, 12]
    best = figures.best_thresholds()
    assert len(best) == 1 and best.not_matched[0] == "F4b"
    assert best.low[0] <= figures.SIMILAR < best.high[0]


@pytest.mark.parametrize("name", list(figures.COMPARISONS))
@pytest.mark.parametrize("steps", figures.STEPS)
def test_each_figure_has_one_bar_per_game_sorted_by_improvement(name, steps):
    fig = figures.paper_figure(figures.figure_ident(name, steps))
    ax = fig.axes[0]
    bars = ax.containers[0]
    games = [label.get_text() for label in ax.get_yticklabels()]
    assert len(bars) == 20 and sorted(games) == sorted(figures.game_titles().values())
    widths = [bar.get_width() for bar in bars]
    assert widths == sorted(widths, reverse=True)
    assert f"{steps} M steps" in ax.get_title() and "paper's data" in ax.get_title()
    plt.close(fig)


def test_unknown_figure_or_steps_are_refused():
    with pytest.raises(ValueError, match="F1, F2"):
        figures.paper_improvements("F13")
    with pytest.raises(ValueError, match="million steps"):
        figures.figure_ident("rdn_vs_lstm", 100)


def record(frames: list[int], wall: list[float], final: dict, test_at=()) -> RunRecord:
    history = pd.DataFrame({"step": range(1, len(frames) + 1), "frames": frames, "wall_time": wall,
                            "episode_return": [float("nan")] + [1.0] * (len(frames) - 1),
                            "episodes": range(len(frames))})
    return RunRecord(name="atari/x", config={"test_at": list(test_at), "test_policy": "sampled"}, config_hash="",
                     seed=0, scale="cpu", schedule={}, history=history, final=final, best={},
                     steps_done=len(frames), stopped="frames", wall_time=wall[-1] + 10, resumed_from=None, versions={})


def test_scores_throughput_and_tables_from_records():
    """Two seeds of the LSTM and one of the RDN on Pong, the LSTM also tested at 100 frames."""
    tested = {"test_score": 3.0, "test_score_std": 1.0, "test_capped": 0,
              "test_greedy_score": -21.0, "test_greedy_score_std": 0.0, "test_greedy_capped": 2}
    recs = [({"game": "pong", "core": "lstm"}, 0, record([100, 200], [1.0, 4.0], {
                 **tested, "test_score_at_100": -20.0, "test_score_std_at_100": 0.5, "test_capped_at_100": 0},
                 test_at=(100, 10_000))),
            ({"game": "pong", "core": "lstm"}, 1, record([100, 200], [1.0, 2.0], {**tested, "test_score": 5.0})),
            ({"game": "pong", "core": "recurrent_delta_net"}, 0, record([100, 200], [1.0, 2.0], {**tested,
                                                                                                  "test_score": 6.0}))]
    tests = sweeps.scores(recs)
    assert tests.frames.tolist() == [100, 200, 200, 200]        # the milestone beyond the budget: never tested
    assert tests.final.tolist() == [False, True, True, True]
    table = sweeps.summary(tests).set_index(["core", "frames"])
    assert table.loc[("lstm", 200), "score"] == 4.0 and table.loc[("lstm", 200), "seeds"] == 2
    assert table.loc[("lstm", 200), "seed_std"] == pytest.approx(math.sqrt(2))
    speed = sweeps.throughput(recs)
    assert speed.frames_per_s.tolist() == [50.0, 100.0, 100.0] and speed.total_seconds[0] == 14.0
    compared = sweeps.comparisons(sweeps.summary(tests))
    assert compared.comparison.tolist() == ["rdn_vs_lstm"]
    assert compared.improvement[0] == pytest.approx((6 - 4) / 6) and compared.verdict[0] == "better"
    ours, paper = sweeps.beside_paper(sweeps.summary(tests), "T7")
    assert ours.game.tolist() == ["Pong", "Pong"] and ours.frames.tolist() == [100, 200]
    assert ours.rdn.isna().tolist() == [True, False] and len(paper) == 20 and (paper.frames == 50_000_000).all()
    assert sweeps.beside_paper(sweeps.summary(tests), "T3")[0].empty   # Pong is not one of Table 3's games
    policies = sweeps.test_policies(recs).set_index(["core", "seed", "policy"])
    assert len(policies) == 6 and policies.loc[("lstm", 1, "sampled"), ["score", "headline"]].tolist() == [5.0, True]
    assert policies.loc[("lstm", 1, "greedy"), ["score", "capped", "headline"]].tolist() == [-21.0, 2, False]
    curves = sweeps.learning_curves(recs)
    assert len(curves) == 6 and set(curves.core) == {"lstm", "recurrent_delta_net"}


def scores(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"game": "pong", "core": core, "seed": 0, "frames": 1000, "final": True, "score": s,
                          "std": sd, "capped": capped} for core, s, sd, capped in rows])


RANDOM = pd.DataFrame([{"game": "pong", "score": -20.0, "std": 0.5, "capped": 0}])


def test_c6_holds_fails_or_is_undecidable():
    # margin: 2 × the larger std of repetition means
    holds, evidence = claims.check_c6(scores(("lstm", -20.5, 0.5, 0), ("recurrent_delta_net", -17.0, 1.0, 0)),
                                      RANDOM)
    assert holds is True and "pong/recurrent_delta_net/seed 0" in evidence
    assert claims.check_c6(scores(("lstm", -18.5, 1.0, 0)), RANDOM)[0] is False      # +1.5 < 2 × 1.0
    assert claims.check_c6(scores(("lstm", -18.9, 0.0, 0)), RANDOM)[0] is True       # +1.1 > 2 × 0.5
    assert claims.check_c6(scores(("lstm", -25.0, 0.5, 0), ("rdn", 5.0, 0.5, 3)), RANDOM)[0] is None  # capped
    assert claims.check_c6(scores(("lstm", -18.0, float("nan"), 0)), RANDOM)[0] is None              # 1 repetition
    capped_random = RANDOM.assign(capped=1)
    assert claims.check_c6(scores(("lstm", 21.0, 0.0, 0)), capped_random)[0] is None
    assert claims.check_c6(scores(("lstm", 21.0, 0.0, 0)).assign(final=False), RANDOM)[0] is None   # no final test
