"""The rules, declared before the runs, that decide the language-modelling claims C3 (RFWP Table 1), C8 (Table 4)
and C10 (ICML Table 5): each holds on numbers ordered as the paper's, fails when one part is reversed, and is
undecidable without its runs."""
from __future__ import annotations

import pandas as pd
import pytest

import rfwp.paper
from rfwp.tasks.language_modelling import claims

TABLE1_NAMES = {"Linear Transformer": "linear_transformer", "Delta Net": "delta_net", "Delta MLP": "delta_mlp",
                "Delta Delta Net": "delta_delta_net", "Delta RNN": "delta_rnn", "Delta LSTM": "delta_lstm",
                "RDN": "recurrent_delta_net", "Transformer": "transformer"}


def table1_runs() -> pd.DataFrame:
    """The paper's own Table 1 as if it were our runs."""
    paper = rfwp.paper.table("rfwp", "T1")
    return pd.DataFrame({"model": paper.model.map(TABLE1_NAMES), "full_context": paper.context == "full",
                         "test_perplexity": paper.test_ppl})


def test_c3_holds_on_the_papers_numbers_and_fails_when_a_part_is_reversed():
    runs = table1_runs()
    assert claims.check_c3(runs)[0] is True
    worse_full = runs.copy()
    worse_full.loc[(worse_full.model == "recurrent_delta_net") & worse_full.full_context, "test_perplexity"] = 40.0
    holds, evidence = claims.check_c3(worse_full)
    assert holds is False and "recurrent_delta_net + full context below recurrent_delta_net: fails" in evidence
    # within the declared 1% margin the Delta LSTM is "no worse" than the Delta Net; beyond it, it is worse
    for factor, verdict in ((1.009, True), (1.02, False)):
        shifted = runs.copy()
        delta_net = shifted.loc[(shifted.model == "delta_net") & ~shifted.full_context, "test_perplexity"].item()
        shifted.loc[(shifted.model == "delta_lstm") & ~shifted.full_context, "test_perplexity"] = delta_net * factor
        assert claims.check_c3(shifted)[0] is verdict
    assert claims.check_c3(runs[runs.model != "delta_lstm"])[0] is None


def test_c8_and_c10_hold_on_the_papers_numbers():
    table4 = rfwp.paper.table("rfwp", "T4")
    assert claims.check_c8(table4)[0] is True
    table4.loc[(table4.model == "Delta LSTM") & (table4.version == "C"), "test_ppl"] = 30.0
    assert claims.check_c8(table4)[0] is False
    assert claims.check_c8(table4[table4.version != "A"])[0] is None
    table5 = rfwp.paper.table("icml", "T5")
    table5 = table5[table5.model != "Transformer"].copy()
    assert claims.check_c10(table5)[0] is True
    table5.loc[(table5.model == "DPFP") & (table5["update"] == "delta"), "test_ppl"] = 40.0
    holds, evidence = claims.check_c10(table5)
    assert holds is False and "DPFP: delta below sum: fails" in evidence
    assert claims.check_c10(table5[table5.model == "DPFP"])[0] is None


@pytest.mark.parametrize("means, stds, seeds, verdict", [
    ((94.1, 85.1), (2.7, 1.9), (6, 6), False),   # the paper's Table 6: more accurate, not smaller std
    ((94.1, 85.1), (1.0, 1.9), (3, 3), True),
    ((80.0, 85.1), (1.0, 1.9), (3, 3), False),
    ((94.1, 85.1), (1.0, 1.9), (1, 3), None),    # one seed has no std
])
def test_c9_rule(means, stds, seeds, verdict):
    from rfwp.tasks.code_execution import claims as code_claims
    summary = pd.DataFrame({"shape": ["deep", "table2"], "model": "delta_rnn", "mean": means, "std": stds,
                            "seeds": seeds})
    assert code_claims.check_c9(summary)[0] is verdict
