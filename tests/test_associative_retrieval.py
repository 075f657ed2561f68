"""The associative retrieval task (ICML Sec. 6.1): data semantics, the memories' closed forms,
resumable training, and the claim checks' decisions."""
from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rfwp import analysis, ops
from rfwp.tasks.associative_retrieval import (RetrievalConfig, RetrievalModel, RetrievalTrainer, config_for,
                                              evaluation_batch, presets, retrieval_loss, run, training_batch)
from rfwp.tasks.associative_retrieval.claims import capacity_limits, check_capacity_claim, check_update_claim
from rfwp.tasks.associative_retrieval.data import sample_sequences
from rfwp.tasks.associative_retrieval.sweeps import update_rule_sweep
from rfwp.train import runs


def test_capacity_sequences_pair_a_permutation_of_keys_with_one_of_values():
    keys, values = sample_sequences("capacity", 9, 50, torch.Generator().manual_seed(0))
    assert keys.shape == values.shape == (50, 9)
    assert (keys.sort(-1).values == torch.arange(9)).all()
    assert (values.sort(-1).values == torch.arange(9)).all()
    assert not (keys == keys[0]).all(), "sequences must differ"


def _last_value_loop(keys, values, query):
    last = max(t for t in range(len(keys)) if keys[t] == query)
    return values[last]


def test_update_targets_are_the_value_at_the_last_occurrence():
    g = torch.Generator().manual_seed(1)
    batch = training_batch("update", 5, 300, g)
    assert batch.keys.shape == (300, 10) and batch.queries.shape == (300, 1)
    assert batch.mask.all(), "training queries are keys of their sequence"
    for b in range(300):
        keys, values, q = batch.keys[b].tolist(), batch.values[b].tolist(), batch.queries[b, 0].item()
        assert q in keys
        assert batch.targets[b, 0].item() == _last_value_loop(keys, values, q)
    # the test exercises re-assigned keys: most sequences of 10 draws from 5 keys repeat a key
    assert (batch.keys.sort(-1).values.diff(dim=-1) == 0).any(-1).float().mean() > 0.9


def test_evaluation_queries_every_key_and_scores_those_present():
    batch = evaluation_batch("update", 6, 20, torch.Generator().manual_seed(2))
    assert batch.keys.shape == (20, 12) and batch.queries.shape == (20, 6)
    for b in range(20):
        keys, values = batch.keys[b].tolist(), batch.values[b].tolist()
        for j, q in enumerate(batch.queries[b].tolist()):
            assert batch.mask[b, j].item() == (q in keys)
            if q in keys:
                assert batch.targets[b, j].item() == _last_value_loop(keys, values, q)
    capacity = evaluation_batch("capacity", 6, 20, torch.Generator().manual_seed(2))
    assert capacity.mask.all() and capacity.keys.shape == (20, 6)


def _programmed_model(memory: str, S: int) -> RetrievalModel:
    """Slow weights set by hand so that φ'(k_t) = onehot(key symbol) (ELU+1 of 0 is 1, of −40 is
    e^−40) and β_t = σ(40) = 1 in float64: the memory sees orthonormal keys and writes fully."""
    model = RetrievalModel(RetrievalConfig(S=S, setting="update", memory=memory, feature_map="elu")).double()
    e = model.config.d_embedding
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[:, :S] = torch.eye(S)
        for linear in (model.W_K, model.W_Q):
            linear.weight.zero_()
            linear.weight[:S, -e:][:, :S] = 40 * torch.eye(S)
            linear.bias.fill_(-40.0)
        model.W_beta.weight.zero_()
        model.W_beta.bias.fill_(40.0)
    if memory == "delta":
        model.features.eps = 0.0  # the guard against 0/0 would scale the exact one-hot keys by 1/(1 + 1e-6)
    return model


def test_delta_memory_with_orthonormal_keys_and_unit_beta_retrieves_the_last_value_exactly():
    S = 7
    batch = evaluation_batch("update", S, 30, torch.Generator().manual_seed(3))
    v_hat = _programmed_model("delta", S)(batch.keys, batch.values, batch.queries)
    # With β = 1 and one-hot keys the delta rule replaces column k by v: W = Σ_k onehot(last v_k) ⊗ e_k.
    expected = F.one_hot(batch.targets, S).double() * batch.mask.unsqueeze(-1)
    torch.testing.assert_close(v_hat, expected, atol=1e-12, rtol=0)
    loss, accuracy = retrieval_loss(v_hat, batch)
    assert loss.item() < 1e-20 and accuracy.item() == 1.0


def test_sum_memory_with_orthonormal_keys_retrieves_the_mean_of_all_values_bound_to_the_key():
    S = 7
    batch = evaluation_batch("update", S, 30, torch.Generator().manual_seed(4))
    v_hat = _programmed_model("sum", S)(batch.keys, batch.values, batch.queries)
    hits = (batch.keys.unsqueeze(1) == batch.queries.unsqueeze(2)).double()          # (B, Q, L)
    bound = hits @ F.one_hot(batch.values, S).double()                               # Σ of values per key
    expected = bound / (hits.sum(-1, keepdim=True) + 1e-6)                          # attention normalisation
    torch.testing.assert_close(v_hat, expected, atol=1e-10, rtol=0)
    # ... so it cannot forget: wherever a key was re-bound to another value, retrieval is wrong.
    rebound = (bound > 0).sum(-1) > 1
    assert rebound.any() and (retrieval_loss(v_hat, batch)[0] > 0.01)


def test_sum_memory_closed_form_is_the_final_state_of_the_sum_rule():
    torch.manual_seed(5)
    model = RetrievalModel(RetrievalConfig(S=6, memory="sum", feature_map="dpfp")).double()
    phi_k = torch.rand(3, 6, 10, dtype=torch.float64)
    values = torch.randint(6, (3, 6))
    v = F.one_hot(values, 6).double()
    _, W = ops.sum_rule(phi_k.unsqueeze(1), phi_k.unsqueeze(1), v.unsqueeze(1), implementation="reference")
    torch.testing.assert_close(model._add_rows(phi_k, values), W.squeeze(1))


def test_schlag2021_read_is_layer_normalised_so_its_loss_has_a_floor():
    """With tanh keys at initialisation the read's variance is far above LayerNorm's ε, so v̂ has
    zero mean and unit variance and 0.5 ‖onehot − v̂‖² ≥ ½(1 + S − 2√(S−1))."""
    S = 9
    torch.manual_seed(6)
    model = RetrievalModel(config_for("schlag2021", S, "update"))
    batch = evaluation_batch("update", S, 20, torch.Generator().manual_seed(6))
    v_hat = model(batch.keys, batch.values, batch.queries)
    per_query = 0.5 * ((F.one_hot(batch.targets, S) - v_hat) ** 2).sum(-1)
    floor = 0.5 * (1 + S - 2 * math.sqrt(S - 1))
    assert (per_query[batch.mask] >= floor - 1e-4).all()


@pytest.mark.parametrize("variant", ["sum_favor64", "delta_dpfp1"])
def test_trainer_resumes_where_it_stopped(variant):
    torch.manual_seed(7)
    trainer = RetrievalTrainer(config_for(variant, 8, "update"), seed=7)
    for step in range(3):
        trainer.train_step(step)
    state = copy.deepcopy(trainer.state_dict())
    straight = [trainer.train_step(step)["loss"] for step in range(3, 6)] + [trainer.evaluate()["loss"]]
    torch.manual_seed(123)  # a different global RNG and fresh weights must not matter once restored
    resumed = RetrievalTrainer(config_for(variant, 8, "update"), seed=7)
    resumed.load_state_dict(state)
    again = [resumed.train_step(step)["loss"] for step in range(3, 6)] + [resumed.evaluate()["loss"]]
    # Same data, draws and weights; float32 BLAS results may still differ in the last bit with the
    # memory alignment of freshly allocated tensors (seen once in CI), hence a relative 1e-6.
    torch.testing.assert_close(torch.tensor(again), torch.tensor(straight), rtol=1e-6, atol=0)


def test_short_training_run_learns_to_retrieve():
    torch.manual_seed(8)
    trainer = RetrievalTrainer(config_for("sum_linear", 10, "capacity"), seed=8)
    before = trainer.evaluate()
    for step in range(300):
        trainer.train_step(step)
    after = trainer.evaluate()
    assert before["loss"] > 0.3 and after["loss"] < 0.5 * before["loss"], (before, after)
    assert before["accuracy"] < 0.5 and after["accuracy"] > 0.9, (before, after)


def _capacity_rows(losses: dict[str, dict[int, float]]) -> pd.DataFrame:
    d_dot = {"sum_linear": 64, "sum_dpfp1": 128, "sum_dpfp2": 256, "sum_dpfp3": 384, "sum_favor64": 128}
    return pd.DataFrame([{"variant": v, "S": S, "loss": loss, "d_dot": d_dot[v], "seed": 0}
                         for v, by_size in losses.items() for S, loss in by_size.items()])


GOOD = {"sum_linear": {20: 0.001, 40: 0.002, 60: 0.06, 80: 0.12}, "sum_dpfp1": {80: 0.001, 160: 0.1},
        "sum_dpfp2": {160: 0.002, 280: 0.05}, "sum_dpfp3": {240: 0.001, 400: 0.03},
        "sum_favor64": {60: 0.2, 160: 0.3}}


def _with(variant, S, loss):
    rows = copy.deepcopy(GOOD)
    rows[variant][S] = loss
    return _capacity_rows(rows)


def test_capacity_claim_check_decides_from_the_threshold():
    assert check_capacity_claim(_capacity_rows(GOOD))[0] is True
    assert check_capacity_claim(_with("sum_linear", 80, 0.005))[0] is False      # holds beyond 64
    reproduced, evidence = check_capacity_claim(_with("sum_dpfp1", 80, 0.05))     # fails below capacity
    assert reproduced is False and "S=80 0.0500" in evidence
    assert check_capacity_claim(_with("sum_dpfp3", 400, 0.0005))[0] is False     # holds above its capacity
    assert check_capacity_claim(_with("sum_favor64", 160, 0.0005))[0] is False   # FAVOR+ holds above it
    assert check_capacity_claim(_with("sum_favor64", 60, 0.0005))[0] is True     # below: not part of C1
    no_dpfp2_above = copy.deepcopy(GOOD)
    del no_dpfp2_above["sum_dpfp2"][280]
    assert check_capacity_claim(_capacity_rows(no_dpfp2_above))[0] is None


def test_capacity_limits_are_the_last_size_held_and_first_failed():
    limits = capacity_limits(_capacity_rows(GOOD)).set_index("model")
    assert limits.loc["Linear-Attention", "largest_S_held"] == 40
    assert limits.loc["Linear-Attention", "errors_from"] == 60
    assert pd.isna(limits.loc["FAVOR+ (m=64)", "largest_S_held"]) and limits.loc["FAVOR+ (m=64)", "errors_from"] == 60


def test_update_claim_check_needs_ours_clearly_below_the_sum_rule():
    def rows(sum_loss, ours_loss):
        return pd.DataFrame([{"variant": "sum_dpfp1", "S": 20, "loss": sum_loss, "d_dot": 128, "seed": 0},
                             {"variant": "delta_dpfp1", "S": 20, "loss": ours_loss, "d_dot": 128, "seed": 0}])
    assert check_update_claim(rows(0.2, 0.01))[0] is True
    assert check_update_claim(rows(0.2, 0.15))[0] is False
    assert check_update_claim(rows(0.2, 0.01).iloc[:1])[0] is None


def test_bad_configuration_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="memory 'sum' takes feature_map in"):
        RetrievalConfig(S=10, memory="sum", feature_map="tanh")
    with pytest.raises(ValueError, match="setting must be one of"):
        RetrievalConfig(S=10, setting="copy")
    with pytest.raises(ValueError, match="unknown variant"):
        config_for("dpfp9", 10, "capacity")
    with pytest.raises(ValueError, match="scale must be one of"):
        presets.preset("huge")


def test_sweep_reuses_complete_records_without_training(tmp_path, monkeypatch):
    """A second sweep reads every record: the trainer is not called once."""
    monkeypatch.setattr(runs, "REPO_ROOT", tmp_path)
    calls = []
    train_step = RetrievalTrainer.train_step
    monkeypatch.setattr(RetrievalTrainer, "train_step", lambda self, step: calls.append(step) or train_step(self, step))
    first = update_rule_sweep("smoke")
    assert sorted(first.variant) == sorted(presets.SMOKE.update) and calls
    assert (first.L == 2 * first.S).all() and first.loss.notna().all()
    assert (first.steps <= presets.SMOKE.max_steps).all()
    assert len(list(tmp_path.glob("results/smoke/runs/smoke/background/update/*/S*/seed0.json"))) == len(first)
    calls.clear()
    again = update_rule_sweep("smoke")
    assert calls == []
    pd.testing.assert_frame_equal(first, again)


def test_run_with_another_learning_rate_is_a_run_of_its_own(tmp_path):
    where = {"results_dir": tmp_path, "cache_dir": tmp_path / "cache", "progress": False}
    paper = run("softmax", 6, "capacity", "smoke", seed=0, **where)
    other = run("softmax", 6, "capacity", "smoke", seed=0, lr=3e-4, steps=100, **where)
    assert paper.name == "background/capacity/softmax/S6"
    assert other.name == "background/capacity/softmax/S6/lr0.0003-steps100"
    assert other.config["lr"] == 3e-4 and paper.config["lr"] == 1e-3 and other.steps_done <= 100


def test_parallel_sweep_gives_the_records_of_a_serial_one(tmp_path):
    """Two single-threaded worker processes train the same runs as one process would (same seeds, same
    data); only the wall time differs."""
    points = [{"variant": v, "S": 6, "setting": "capacity", "scale": "smoke", "steps": 100, "lr": 1e-3,
               "results_dir": str(tmp_path / "serial")} for v in ("softmax", "sum_dpfp1")]
    serial = analysis.sweep(run, points, seeds=(0, 1), workers=1)
    parallel = analysis.sweep(run, [{**p, "results_dir": str(tmp_path / "parallel")} for p in points],
                              seeds=(0, 1), workers=2)
    columns = ["variant", "seed", "best_step", "steps", "stopped"]
    pd.testing.assert_frame_equal(serial[columns], parallel[columns])
    torch.testing.assert_close(torch.tensor(parallel.loss.values), torch.tensor(serial.loss.values),
                               rtol=1e-4, atol=1e-6)


def test_favor_read_is_swamped_by_its_epsilon_once_keys_are_long():
    """At initialisation FAVOR+'s z·φ(q) falls from order 1 at S = 20 below the read's ε = 1e-6 by S = 200,
    where the model then reads (almost) nothing: the cause of its loss of 0.5 at large S."""
    from rfwp.tasks.associative_retrieval.diagnostics import favor_read_denominators
    table = favor_read_denominators([20, 200]).set_index("S")
    assert table.loc[20, "fraction_below_eps"] == 0 and table.loc[200, "fraction_below_eps"] == 1
    assert table.loc[200, "median_half_key_norm"] > 5 * table.loc[20, "median_half_key_norm"]
    torch.manual_seed(0)
    model = RetrievalModel(config_for("sum_favor64", 200, "capacity")).eval()
    batch = evaluation_batch("capacity", 200, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        v_hat = model(batch.keys, batch.values, batch.queries)
    assert v_hat.abs().max() < 1e-6
    assert retrieval_loss(v_hat, batch)[0].item() == pytest.approx(0.5, abs=1e-5)


def test_softmax_attention_is_sharper_at_initialisation_the_more_keys():
    from rfwp.tasks.associative_retrieval.diagnostics import softmax_attention_at_initialisation
    table = softmax_attention_at_initialisation([20, 320]).set_index("S")
    assert table.loc[320, "logit_std"] > 10 * table.loc[20, "logit_std"]
    # with 20 keys and logits of spread 0.2 no key stands out; with 320 keys one takes a large share
    assert table.loc[20, "median_largest_weight"] < 0.15 < 0.3 < table.loc[320, "median_largest_weight"]
