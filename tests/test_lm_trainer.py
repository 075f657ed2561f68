"""Language modelling runs (rfwp.tasks.language_modelling.trainer): full-context training is backpropagation
through time cut at the segment boundaries, a killed run resumes to the record of an uninterrupted one, the command
line trains alone and under torchrun, and bad input is one clear error."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oracle import Crash, assert_same_state, crashing
from rfwp import ModelConfig
from rfwp.models import detach_state
from rfwp.tasks.language_modelling import __main__ as command
from rfwp.tasks.language_modelling.corpus import Corpus
from rfwp.tasks.language_modelling.generation import continuation
from rfwp.tasks.language_modelling.presets import preset
from rfwp.tasks.language_modelling.trainer import (LanguageModellingConfig, LanguageModellingTrainer, Variant, config,
                                                   run_name)
from rfwp.train import OptimiserConfig, Schedule, execute

ROOT = Path(__file__).resolve().parents[1]
VOCAB, BATCH, SEGMENT = 11, 3, 4
STREAM = torch.randint(VOCAB, (400,), generator=torch.Generator().manual_seed(0))
CORPUS = Corpus("tiny", tuple(f"w{i}" for i in range(VOCAB)), STREAM[:300], STREAM[300:350], STREAM[350:])
TINY = ModelConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, dropout=0.0, vocab_size=VOCAB, tie_embeddings=True,
                   implementation="reference")


def lm_config(model="delta_rnn", full_context=True, lr=0.0, **fields) -> LanguageModellingConfig:
    return LanguageModellingConfig("tiny", model, TINY, OptimiserConfig(lr=lr), BATCH, SEGMENT, full_context,
                                   eval_batch_size=2, eval_stride=2, **fields)


def trainer_for(config: LanguageModellingConfig) -> LanguageModellingTrainer:
    torch.manual_seed(0)
    return LanguageModellingTrainer(config, CORPUS)


@pytest.mark.parametrize("model", ["linear_transformer", "delta_rnn", "delta_lstm", "recurrent_delta_net"])
def test_full_context_training_is_bptt_cut_at_segment_boundaries(model):
    """After k steps (lr 0: the weights stay) the carried state is the state of one pass over the first k segments
    of every column, and step k's gradients are those of segment k's loss from that pass's state, detached."""
    trainer = trainer_for(lm_config(model))
    steps = 3
    for step in range(steps):
        trainer.train_step(step)
    grads = [p.grad.clone() for p in trainer.model.parameters()]
    columns = CORPUS.train[:(len(CORPUS.train) - 1) // BATCH * BATCH].view(BATCH, -1)
    with torch.no_grad():
        _, whole = trainer.model(columns[:, :steps * SEGMENT])
        _, before_last = trainer.model(columns[:, :(steps - 1) * SEGMENT])
    assert_same_state(trainer.state, whole)
    # step k by hand: segment k's mean token loss, from the state of the segments before it, detached
    trainer.model.zero_grad()
    inputs = columns[:, (steps - 1) * SEGMENT:steps * SEGMENT]
    targets = CORPUS.train[1:len(columns.flatten()) + 1].view(BATCH, -1)[:, (steps - 1) * SEGMENT:steps * SEGMENT]
    logits, _ = trainer.model(inputs, detach_state(before_last))
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    for expected, got in zip((p.grad for p in trainer.model.parameters()), grads):
        torch.testing.assert_close(got, expected)


def test_truncated_training_starts_every_segment_from_zeros():
    """Without the full context, step 1's gradients are those of its segment read from a zero state."""
    trainer = trainer_for(lm_config(full_context=False))
    trainer.train_step(0)
    assert trainer.state is None
    position = trainer.train.state_dict()
    batch = trainer.train.next()
    trainer.train.load_state_dict(position)
    trainer.train_step(1)
    grads = [p.grad.clone() for p in trainer.model.parameters()]
    trainer.model.zero_grad()
    logits, _ = trainer.model(batch.inputs)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten()).backward()
    for expected, got in zip((p.grad for p in trainer.model.parameters()), grads):
        torch.testing.assert_close(got, expected)


def _make(config, seed):
    return LanguageModellingTrainer(config, CORPUS)


@pytest.mark.parametrize("model", ["delta_rnn", "transformer_xl"])
def test_killed_full_context_run_resumes_to_the_uninterrupted_record(tmp_path, model):
    """The checkpoint holds the carried state: a run killed after it and resumed ends with the same history and
    the same final perplexities as one trained in one go."""
    cfg = lm_config(model, lr=1e-2, memory_windows=((2, 1),) if model == "transformer_xl" else ())
    cfg = dataclasses.replace(cfg, model_config=dataclasses.replace(TINY, dropout=0.1, memory=SEGMENT))
    schedule = Schedule(steps=8, eval_every=4, checkpoint_every=4, monitor="valid_loss")
    whole = execute("lm/tiny", cfg, _make, schedule, seed=0, scale="cpu", results_dir=tmp_path / "a",
                    cache_dir=tmp_path / "ca", progress=False)

    with pytest.raises(Crash):
        execute("lm/tiny", cfg, crashing(_make, at_step=6), schedule, seed=0, scale="cpu", results_dir=tmp_path / "b",
                cache_dir=tmp_path / "cb", progress=False)
    resumed = execute("lm/tiny", cfg, _make, schedule, seed=0, scale="cpu", results_dir=tmp_path / "b",
                      cache_dir=tmp_path / "cb", progress=False)
    assert resumed.resumed_from == 4
    assert resumed.history.drop(columns="wall_time").equals(whole.history.drop(columns="wall_time"))
    assert resumed.final == whole.final and "test_perplexity" in whole.final
    if model == "transformer_xl":
        assert "test_perplexity_memory2_target1" in whole.final


def test_transformer_xl_windows_see_what_their_memory_holds():
    """Evaluated at memory 2, target 1, Transformer-XL sees 3 tokens; with the training memory, more: the
    perplexities differ, and the layers get their training memory back."""
    trainer = trainer_for(dataclasses.replace(lm_config("transformer_xl", memory_windows=((2, 1),)),
                                              model_config=dataclasses.replace(TINY, memory=SEGMENT)))
    out = trainer.final_evaluate()
    assert out["test_perplexity_memory2_target1"] != pytest.approx(out["test_perplexity"], rel=1e-6)
    assert all(m.memory == SEGMENT for m in trainer.model.modules() if hasattr(m, "content_bias"))


def test_run_configs_follow_the_paper():
    """Full context drops the positional encoding (the authors' --no_pos); Transformer-XL's memory is a segment;
    the Performer is FAVOR+ with the scale's m; the Delta MLP has fewer layers; the Linear Transformer has no
    normalisation unless asked for attention normalisation; names say which run is which."""
    truncated, full = config("delta_rnn", "smoke", 100), config("delta_rnn", "smoke", 100, Variant(full_context=True))
    assert truncated.model_config.positional_encoding and not full.model_config.positional_encoding
    xl = config("transformer_xl", "smoke", 100, Variant(full_context=True))
    assert xl.model_config.memory == truncated.segment_length
    performer = config("delta_net", "smoke", 100, Variant(feature_map="favor")).model_config
    assert performer.feature_map == "favor" and performer.m == 4
    assert config("delta_mlp", "paper", 300_000).model_config.n_layers == 11
    assert config("delta_mlp", "paper", 300_000, Variant(version="A")).model_config.n_layers == 8
    assert config("linear_transformer", "paper", 300_000).model_config.normalisation == "none"
    assert config("delta_net", "paper", 300_000).model_config.normalisation == "sum"
    for model in ("linear_transformer", "delta_net"):
        normalised = config(model, "paper", 300_000, Variant(attention_normalisation=True)).model_config
        assert normalised.normalisation == "attention"
    assert (run_name("shakespeare", "delta_net", Variant(full_context=True, feature_map="favor"))
            == "language_modelling/shakespeare/delta_net_favor_full_context")


@pytest.mark.parametrize("model, variant, name", [
    ("delta_rnn", Variant(version="B"), "delta_rnn"),                     # Table 1's version
    ("delta_rnn", Variant(version="A"), "delta_rnn_A"),
    ("delta_net", Variant(feature_map="favor", m=4), "delta_net_favor"),  # the smoke scale's m
    ("delta_net", Variant(feature_map="favor", m=16), "delta_net_favor_m16"),
    ("delta_net", Variant(feature_map="dpfp"), "delta_net_dpfp_nu1"),
    ("delta_net", Variant(m=16, nu=3), "delta_net"),                      # m and ν of unused feature maps
    ("delta_net", Variant(positional_encoding=True), "delta_net"),
    ("delta_net", Variant(positional_encoding=False), "delta_net_no_positions"),
    ("delta_net", Variant(positional_encoding=False, full_context=True), "delta_net_full_context"),
    ("delta_net", Variant(attention_normalisation=True), "delta_net_attention_normalisation"),
])
def test_a_variant_equal_to_table_1s_is_table_1s_run(model, variant, name):
    """Variants that only spell out Table 1's choices resolve to Table 1's run: one name and one config hash."""
    scale = preset("smoke")
    resolved = variant.resolved(model, scale)
    assert run_name("shakespeare", model, resolved) == f"language_modelling/shakespeare/{name}"
    same = Variant(**{f.name: getattr(resolved, f.name) for f in dataclasses.fields(Variant)})
    assert config(model, "smoke", 100, variant) == config(model, "smoke", 100, same)
    if name == model:
        assert config(model, "smoke", 100, variant) == config(model, "smoke", 100)


@pytest.mark.parametrize("call, message", [
    (lambda: config("lstm", "smoke", 100), "unknown language model 'lstm'"),
    (lambda: config("delta_net", "huge", 100), "scale must be one of"),
    (lambda: dataclasses.replace(lm_config(), segment_length=0), "segment_length and eval_stride must be ≥ 1"),
    (lambda: config("transformer_xl", "smoke", 100), "use full_context=True"),
    (lambda: config("delta_rnn", "smoke", 100, Variant(version="Z")), "version"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("arguments, message", [
    (["--model", "lstm", "--scale", "smoke"], "unknown language model 'lstm'"),
    (["--model", "delta_net", "--scale", "paper", "--data-dir", "/nonexistent"], "lacks wiki.train.tokens"),
])
def test_command_line_bad_input_is_one_line(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        command.main(arguments)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and "Traceback" not in error


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_command_line_trains_alone_and_under_torchrun(tmp_path, processes):
    """The smoke run of the Delta Net on the embedded corpus, by ``python -m`` and by torchrun with 2 processes
    (gloo): the record is written once, with the final perplexities."""
    arguments = ["-m", "rfwp.tasks.language_modelling", "--model", "delta_net", "--scale", "smoke",
                 "--results-dir", str(tmp_path)]
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                        "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher + arguments, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout[done.stdout.index("{"):])
    record = json.loads(Path(printed["record"]).read_text())
    assert record["final"]["test_perplexity"] == printed["test_perplexity"] > 1
    assert record["config"]["batch_size"] == 4 and record["steps_done"] == 6
    shutil.rmtree(tmp_path)


def test_continuation_reads_the_prompt_and_samples_reproducibly():
    """The prompt is echoed (a word outside the vocabulary as <unk>), the sample depends on the seed alone (the
    global random state is untouched), and with top_k 1 it is the greedy continuation computed by hand."""
    trainer = trainer_for(lm_config("delta_net"))
    model, corpus = trainer.model, dataclasses.replace(CORPUS, vocabulary=("<eos>", "<unk>", *CORPUS.vocabulary[2:]))
    rng = torch.get_rng_state()
    text = continuation(model, corpus, "w3 w4 zebra", words=5, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert text.split()[:3] == ["w3", "w4", "<unk>"] and len(text.split()) == 8
    assert continuation(model, corpus, "w3 w4 zebra", words=5, seed=1) == text
    greedy, ids = continuation(model, corpus, "w3", words=3, top_k=1), [0, 3]
    for _ in range(3):
        with torch.no_grad():
            ids.append(int(model.eval()(torch.tensor([ids]))[0][0, -1].argmax()))
    words = " ".join(corpus.vocabulary[i] for i in ids[1:])
    assert greedy == words.replace(" <eos> ", "\n").replace("<eos>", "\n").strip()
    with pytest.raises(ValueError, match="temperature > 0"):
        continuation(model, corpus, "w3", temperature=0)
