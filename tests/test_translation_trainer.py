"""Translation runs (rfwp/tasks/translation/trainer.py, presets, claims): token-budget batches cover every pair once an
epoch within the budget and resume exactly, the inverse-square-root schedule is its closed form, a tiny run learns
and records valid and test BLEU of its selected checkpoint, a killed run resumes to the uninterrupted record, the
rule of claim C11, the paper's settings, and one clear error for bad input. On a tiny corpus of number words."""
from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from oracle import Crash, crashing
from rfwp import paper
from rfwp.tasks.translation import corpus, subwords
from rfwp.tasks.translation import trainer as trainer_module
from rfwp.tasks.translation.claims import check_c11
from rfwp.tasks.translation.model import Transformer, TranslationConfig
from rfwp.tasks.translation.presets import PAPER, PAPER_NAMES, TABLE1_SETTINGS
from rfwp.tasks.translation.trainer import (TokenBudgetStream, TranslationRunConfig, TranslationTrainer, config,
                                            evenly_spaced, inverse_sqrt, prepare, run, run_name, schedule,
                                            split_loss)
from rfwp.train import Schedule, execute

ENGLISH = "one two three four five six seven eight nine ten eleven twelve".split()
SPANISH = "uno dos tres cuatro cinco seis siete ocho nueve diez once doce".split()
VOCABULARY = 330


def numbers(n: int, rng: random.Random) -> corpus.ParallelText:
    """n sentences of 2 to 6 number words and their word-for-word translations."""
    rows = [[rng.randrange(12) for _ in range(rng.randint(2, 6))] for _ in range(n)]
    return corpus.ParallelText(tuple(" ".join(ENGLISH[i] for i in row) for row in rows),
                               tuple(" ".join(SPANISH[i] for i in row) for row in rows))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(0)
    text = corpus.Corpus("numbers", ("en", "es"), numbers(240, rng), numbers(12, rng), numbers(12, rng), dropped={})
    return prepare(text, subwords.learn(text, VOCABULARY, tmp_path_factory.mktemp("subwords")))


def run_config(attention="performer", **fields) -> TranslationRunConfig:
    model = TranslationConfig(vocabulary=VOCABULARY, d_model=16, n_heads=2, d_ff=32, encoder_layers=1,
                              decoder_layers=1, dropout=0.1, attention=attention, m=4, nu=1)
    settings = dict(max_tokens=64, lr=1e-2, warmup_steps=2, eval_sentences=6, beam=2, examples=2)
    return TranslationRunConfig("numbers", VOCABULARY, model, **{**settings, **fields})


def test_token_budget_batches_cover_every_pair_once_an_epoch_within_the_budget(data):
    pairs = data.splits["train"]
    budget = 40
    stream = TokenBudgetStream(pairs, budget, seed=0)
    size = np.maximum(pairs.source.lengths, pairs.target.lengths) + 1   # EOS included
    kept = np.flatnonzero(size <= budget)
    epochs = []
    for _ in range(2):
        seen = []
        for _ in range(len(stream)):
            batch = stream.next()
            index = batch.index.numpy()
            assert len(index) * size[index].max() <= budget
            assert batch.source.shape == (len(index), (pairs.source.lengths[index] + 1).max())
            target_shape = (len(index), (pairs.target.lengths[index] + 1).max())
            assert batch.target.shape == batch.target_input.shape == target_shape
            seen.extend(index.tolist())
        assert sorted(seen) == kept.tolist()
        epochs.append(seen)
    assert epochs[0] != epochs[1]   # each epoch in a new order
    assert stream.skipped == len(pairs) - len(kept) and stream.epoch == 1
    # a pair: the source ends with EOS, the decoder reads BOS y and predicts y EOS
    x, y = pairs.source[int(index[0])], pairs.target[int(index[0])]
    assert batch.source[0, :len(x) + 1].tolist() == [*x.tolist(), subwords.EOS]
    assert batch.target_input[0, :len(y) + 1].tolist() == [subwords.BOS, *y.tolist()]
    assert batch.target[0, :len(y) + 1].tolist() == [*y.tolist(), subwords.EOS]
    assert (batch.target[0, len(y) + 1:] == subwords.PAD).all()


def test_the_stream_resumes_exactly(data):
    stream = TokenBudgetStream(data.splits["train"], 64, seed=3)
    for _ in range(5):
        stream.next()
    state = stream.state_dict()
    ahead = [stream.next() for _ in range(2 * len(stream))]   # across an epoch's end
    resumed = TokenBudgetStream(data.splits["train"], 64, seed=7)
    resumed.load_state_dict(state)
    for expected, got in zip(ahead, (resumed.next() for _ in range(2 * len(stream)))):
        assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_inverse_sqrt_schedule_is_its_closed_form():
    """With the warm-up from 0 and the peak d^(−1/2)·w^(−1/2), fairseq's schedule is Vaswani et al.'s Eq. 3,
    d^(−1/2)·min(s^(−1/2), s·w^(−3/2)), at update s ≥ 1."""
    d, w = 512, 4000
    for s in (1, 10, 1999, 3999, 4000, 4001, 10_000, 100_000):
        expected = d ** -0.5 * min(s ** -0.5, s * w ** -1.5)
        assert inverse_sqrt(s, d ** -0.5 * w ** -0.5, w, 0.0) == pytest.approx(expected, rel=1e-12)
    assert inverse_sqrt(0, 1e-3, 4000) == 1e-7                              # fairseq's --warmup-init-lr
    assert inverse_sqrt(2000, 1e-3, 4000) == pytest.approx((1e-7 + 1e-3) / 2)
    assert inverse_sqrt(16_000, 1e-3, 4000) == pytest.approx(5e-4)


def test_a_tiny_run_learns_and_records_the_selected_checkpoint_s_bleu(data, tmp_path):
    schedule_ = Schedule(steps=12, eval_every=4, monitor="valid_bleu", mode="max")
    steps = []

    def make(config, seed):
        trainer = TranslationTrainer(config, data, seed)
        train_step = trainer.train_step
        trainer.train_step = lambda step: steps.append(trainer.optimiser.param_groups[0]["lr"]) or train_step(step)
        return trainer

    record = execute("translation/numbers/performer", run_config(), make, schedule_, seed=0, scale="smoke",
                     results_dir=tmp_path, cache_dir=tmp_path / "checkpoints", progress=False)
    history = record.history
    assert history.valid_loss.iloc[-1] < history.valid_loss.iloc[0]
    assert history.train_lr.tolist() == pytest.approx([np.mean([inverse_sqrt(s, 1e-2, 2) for s in range(i, i + 4)])
                                                       for i in (0, 4, 8)])
    final = record.final
    assert {"valid_bleu", "test_bleu", "valid_loss", "test_loss", "bleu_signature", "example1_hypothesis"} <= set(final)
    assert 0 <= final["test_bleu"] <= 100 and final["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert final["selected_step"] == record.best["step"]
    assert final["example0_source"] == data.corpus.test.source[0]
    assert record.path.is_file() and record.path.parent.name == "performer"


def test_final_evaluation_reads_the_selected_weights_not_the_last(data):
    torch.manual_seed(0)
    trainer = TranslationTrainer(run_config("dpfp", eval_sentences=None), data, seed=0)
    trainer.evaluate()   # the untrained weights: the best so far
    selected = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for step in range(6):
        trainer.train_step(step)
    trainer.best["valid_bleu"] = math.inf   # so that no later evaluation replaces it
    trainer.evaluate()
    out = trainer.final_evaluate()
    model = Transformer(run_config("dpfp").model)
    model.load_state_dict(selected)
    everything = np.arange(len(data.splits["test"]))
    loss, _ = split_loss(model.eval(), data.splits["test"], everything, 64, 0.1)
    last, _ = split_loss(trainer.model.eval(), data.splits["test"], everything, 64, 0.1)
    assert out["selected_step"] == 0 and out["test_loss"] == pytest.approx(loss) and loss != pytest.approx(last)


def test_killed_run_resumes_to_the_uninterrupted_record(data, tmp_path):
    """The checkpoint holds the stream's position and the selected weights: a run killed after it and resumed ends
    with the same history and final evaluation (BLEU, translations) as one trained in one go."""
    cfg = run_config()
    schedule_ = Schedule(steps=8, eval_every=4, checkpoint_every=4, monitor="valid_bleu", mode="max")

    def make(config, seed):
        return TranslationTrainer(config, data, seed)

    whole = execute("translation/numbers/performer", cfg, make, schedule_, seed=1, scale="smoke",
                    results_dir=tmp_path / "a", cache_dir=tmp_path / "ca", progress=False)

    with pytest.raises(Crash):
        execute("translation/numbers/performer", cfg, crashing(make, at_step=6), schedule_, seed=1, scale="smoke",
                results_dir=tmp_path / "b", cache_dir=tmp_path / "cb", progress=False)
    resumed = execute("translation/numbers/performer", cfg, make, schedule_, seed=1, scale="smoke",
                      results_dir=tmp_path / "b", cache_dir=tmp_path / "cb", progress=False)
    assert resumed.resumed_from == 4
    assert resumed.history.drop(columns="wall_time").equals(whole.history.drop(columns="wall_time"))
    assert resumed.final == whole.final and "test_bleu" in whole.final


def c11_runs(changes: dict | None = None) -> pd.DataFrame:
    """ICML Table 1's test BLEU as runs of seed 0, with ``changes`` {(attention, d_dot): test BLEU, or None to drop
    the run}."""
    names = {name: attention for attention, name in PAPER_NAMES.items()}
    table = paper.table("icml", "T1")
    bleu = {(names[m], d): b for m, d, b in zip(table.model, table.d_dot, table.test_bleu)}
    bleu.update(changes or {})
    return pd.DataFrame([{"attention": a, "d_dot": d, "seed": 0, "test_bleu": b}
                         for (a, d), b in bleu.items() if b is not None])


@pytest.mark.parametrize("changes, verdict", [
    ({}, True),                                  # the paper's own numbers
    ({("dpfp", 256): 26.8}, False),              # DPFP 256 not above Linear (26.8)
    ({("performer", 256): 27.0}, False),         # Performer 256 above DPFP 256 (26.9)
    ({("performer", 512): 26.5}, False),         # Performer 512 further from Standard (27.7) than DPFP 512 (27.1)
    ({("dpfp", 512): None}, None),
    ({("softmax", 64): None}, None),
])
def test_claim_c11_rule(changes, verdict):
    reproduced, evidence = check_c11(c11_runs(changes))
    assert reproduced is verdict
    assert evidence.startswith("not decidable") == (verdict is None)


def test_claim_c11_averages_seeds():
    runs = c11_runs()
    second = runs.assign(seed=1, test_bleu=runs.test_bleu.where(runs.attention != "dpfp", 20.0))
    assert check_c11(pd.concat([runs, second]))[0] is False   # DPFP 256's mean 23.45 is below Linear's 26.8


def test_runs_follow_the_paper():
    """Table 1's settings; Table 6's m and ν; App. E's batches (3 GPUs × 16 × 3,584 tokens), warm-up, smoothing,
    45 epochs; selection on valid BLEU; names say which run is which."""
    table = paper.table("icml", "T1")
    names = {name: attention for attention, name in PAPER_NAMES.items()}
    assert TABLE1_SETTINGS == tuple((names[m], d) for m, d in zip(table.model, table.d_dot))
    assert config("performer", 512, "paper").model.m == 256 and config("dpfp", 256, "paper").model.nu == 2
    assert {config(a, d, "paper").model.d_dot for a, d in TABLE1_SETTINGS if a == "dpfp"} == {256, 512}
    big = config("softmax", None, "paper")
    assert (big.max_tokens, big.accumulate, big.warmup_steps, big.label_smoothing, big.betas, big.vocabulary) == \
        (3584, 48, 4000, 0.1, (0.9, 0.98), 32_000)
    assert big.model.d_model == 1024 and big.model.dropout == 0.3 and PAPER.epochs == 45
    smoke = schedule("smoke")
    assert (smoke.monitor, smoke.mode) == ("valid_bleu", "max")
    assert run_name("bible_en_es", "dpfp", 256) == "translation/bible_en_es/dpfp_ddot256"
    assert evenly_spaced(10, 4).tolist() == [0, 2, 5, 7] and evenly_spaced(3, None).tolist() == [0, 1, 2]


def test_a_scale_in_epochs_counts_the_updates_of_an_epoch(data, monkeypatch):
    """The paper's scale is 45 epochs, evaluated once an epoch: ⌈batches an epoch / accumulate⌉ updates each."""
    scale = replace(PAPER, corpus="numbers", vocabulary=VOCABULARY, max_tokens=64, accumulate=2, epochs=3)
    monkeypatch.setattr(trainer_module, "preset", lambda name: scale)
    monkeypatch.setattr(trainer_module, "load_data", lambda *args: data)
    per_epoch = math.ceil(len(TokenBudgetStream(data.splits["train"], 64, seed=0)) / 2)
    assert per_epoch > 1
    assert (schedule("paper").steps, schedule("paper").eval_every) == (3 * per_epoch, per_epoch)


@pytest.mark.parametrize("call, message", [
    (lambda: run("favour", 256, "smoke", train=False), r"attention must be one of \('softmax', 'linear', "
                                                       r"'performer', 'dpfp'\), got 'favour'"),
    (lambda: run("performer", None, "smoke", train=False), r"the performer attention needs d_dot \(ICML Table 1: "
                                                           r"64, 256, 512\)"),
    (lambda: run("dpfp", scale="smoke", train=False), r"the dpfp attention needs d_dot \(ICML Table 1: 256, 512\)"),
    (lambda: run("dpfp", 200, "smoke", train=False), "DPFP's d_dot is 2·d_key·ν, a multiple of 128"),
    (lambda: run("performer", 65, "smoke", train=False), "the performer's d_dot is 2m, an even number, got 65"),
    (lambda: run("linear", 256, "smoke", train=False), "linear attention has d_dot = d_key = 64, got d_dot 256"),
    (lambda: run("softmax", 64, "huge", train=False), "scale must be one of"),
    (lambda: run_config(max_tokens=0, beam=0), r"max_tokens, beam must be positive integers"),
    (lambda: replace(run_config(), vocabulary=100), r"the model's vocabulary \(330\) must be the run's \(100\)"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
