"""The shared token-task trainer (rfwp.train.supervised): accumulation, schedule, clipping, evaluation,
truncated BPTT and resume, each against a closed form or a direct computation."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from oracle import Crash, crashing, state_tensors
from rfwp import ModelConfig, build_model
from rfwp.train import (ContiguousSegments, OptimiserConfig, Schedule, SequenceTrainer, ShuffledBatches, TokenBatch,
                        execute)

VOCAB = 11


def small_model(name="delta_net", dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=dropout, vocab_size=VOCAB,
                         n_outputs=VOCAB)
    return build_model(name, config)


def random_batch(generator, batch=4, length=7):
    inputs = torch.randint(VOCAB, (batch, length), generator=generator)
    targets = torch.randint(VOCAB, (batch, length), generator=generator)
    mask = torch.rand(batch, length, generator=generator) < 0.6
    return TokenBatch(inputs, targets, mask)


class ListStream:
    """Hands out the given batches in order (a stream whose content a test fixes)."""

    def __init__(self, batches):
        self.batches, self.position = batches, 0

    def next(self):
        self.position += 1
        return self.batches[self.position - 1]

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def test_accumulation_equals_one_large_batch():
    """Two halves with accumulate=2 give the same update as the whole batch at once: the loss is the mean
    over all scored tokens of the step, whatever their split (the halves have different token counts)."""
    g = torch.Generator().manual_seed(1)
    whole = random_batch(g, batch=6)
    halves = [TokenBatch(*(t[:2] for t in whole[:3])), TokenBatch(*(t[2:] for t in whole[:3]))]
    assert halves[0].mask.sum() != halves[1].mask.sum()
    one = SequenceTrainer(small_model(), OptimiserConfig(lr=1e-2), ListStream([whole]), {})
    two = SequenceTrainer(small_model(), OptimiserConfig(lr=1e-2, accumulate=2), ListStream(halves), {})
    out_one, out_two = one.train_step(0), two.train_step(0)
    assert out_one["tokens"] == out_two["tokens"] == int(whole.mask.sum())
    assert out_one["loss"] == pytest.approx(out_two["loss"], rel=1e-6)
    for p, q in zip(one.model.parameters(), two.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_learning_rate_schedule_closed_form():
    config = OptimiserConfig(lr=2.0, warmup_steps=10, decay="cosine", total_steps=110)
    assert [config.factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert config.factor(60) == pytest.approx(0.5)                      # half-way through the cosine
    assert config.factor(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert config.factor(110) == pytest.approx(0.0, abs=1e-12) and config.factor(500) == pytest.approx(0.0, abs=1e-12)
    # the optimiser sees lr × factor at every step
    g = torch.Generator().manual_seed(0)
    trainer = SequenceTrainer(small_model(), config, ListStream([random_batch(g) for _ in range(12)]), {})
    seen = [trainer.train_step(s)["lr"] for s in range(12)]
    assert seen == pytest.approx([2.0 * config.factor(s) for s in range(12)])
    with pytest.raises(ValueError, match="cosine decay needs total_steps"):
        OptimiserConfig(decay="cosine")


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_clipping_bounds_the_gradient_norm_that_adam_sees():
    g = torch.Generator().manual_seed(2)
    batches = [random_batch(g) for _ in range(2)]
    norms = []
    for clip in (None, 1e-3):
        trainer = SequenceTrainer(small_model(), OptimiserConfig(clip=clip), ListStream(batches), {})
        step = trainer.optimiser.step

        def record_then_step(*args, trainer=trainer, step=step, **kwargs):
            grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads])).item())
            return step(*args, **kwargs)

        trainer.optimiser.step = record_then_step
        out = trainer.train_step(0)
    assert norms[0] > 1e-2                                # unclipped: far above the bound
    assert norms[1] == pytest.approx(1e-3, rel=1e-4)      # clipped to it
    assert out["grad_norm"] == pytest.approx(norms[0], rel=1e-5)   # reported: the norm before clipping


def test_evaluation_turns_dropout_off_and_sums_metrics_over_the_split():
    g = torch.Generator().manual_seed(3)
    split = [random_batch(g) for _ in range(3)]

    def accuracies(logits, batch):
        right = (logits.argmax(-1) == batch.targets) | ~batch.mask
        return {"sequence_accuracy": (right.all(-1).sum().item(), len(right))}

    model = small_model(dropout=0.5)
    trainer = SequenceTrainer(model, OptimiserConfig(), ListStream([]), {"valid": split}, metrics=accuracies)
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second and model.training          # deterministic, and back in training mode after
    model.eval()
    with torch.no_grad():
        logits = [model(b.inputs)[0] for b in split]
    losses = [torch.nn.functional.cross_entropy(lg[b.mask], b.targets[b.mask], reduction="sum")
              for lg, b in zip(logits, split)]
    tokens = sum(b.mask.sum() for b in split)
    assert first["valid_loss"] == pytest.approx((sum(losses) / tokens).item(), rel=1e-6)
    right = sum(((lg.argmax(-1) == b.targets) | ~b.mask).all(-1).sum().item() for lg, b in zip(logits, split))
    assert first["valid_sequence_accuracy"] == pytest.approx(right / 12)


def test_contiguous_segments_carry_state_like_one_long_sequence():
    """With carry_state, two consecutive segments read as one text: the second segment's logits equal those
    of the whole stream, and the state carried between them has no graph (truncated BPTT)."""
    tokens = torch.randint(VOCAB, (2 * 10 + 1,), generator=torch.Generator().manual_seed(4))
    stream = ContiguousSegments(tokens, batch_size=2, segment_length=5)
    first, second = stream.next(), stream.next()
    torch.testing.assert_close(first.targets[:, :-1], first.inputs[:, 1:])            # next tokens
    torch.testing.assert_close(second.inputs[:, 0], first.targets[:, -1])             # rows continue
    assert first.reset[:, 0].all() and not second.reset.any()
    model = small_model("delta_rnn")
    trainer = SequenceTrainer(model, OptimiserConfig(lr=0.0), ListStream([first, second]), {}, carry_state=True)
    trainer.train_step(0)
    carried = trainer.state
    leaves = state_tensors(carried)
    assert leaves and all(t.grad_fn is None and not t.requires_grad for t in leaves)
    with torch.no_grad():
        whole, _ = model(torch.cat([first.inputs, second.inputs], 1))
        split, _ = model(second.inputs, carried, second.reset)
    torch.testing.assert_close(split, whole[:, 5:], rtol=1e-5, atol=1e-6)
    assert stream.next().reset[:, 0].all()                                              # wraps to the start


def test_shuffled_batches_cover_every_sequence_once_per_epoch():
    n = 10
    inputs = torch.arange(n).unsqueeze(1)
    stream = ShuffledBatches(inputs, inputs, torch.ones_like(inputs, dtype=torch.bool), batch_size=3, seed=0)
    epoch = torch.cat([stream.next().inputs for _ in range(3)]).flatten()
    assert len(set(epoch.tolist())) == 9                  # 3 batches of 3 distinct rows, the 10th dropped
    stream.next()
    assert stream.epoch == 1
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 10 sequences"):
        ShuffledBatches(inputs, inputs, inputs > 0, batch_size=11, seed=0)


def test_shuffled_batches_are_cut_after_their_last_scored_position():
    lengths = torch.tensor([2, 5, 3, 9, 4, 1])
    mask = torch.arange(9) < lengths[:, None]                     # sequences padded at the end to the longest
    inputs = torch.arange(6 * 9).view(6, 9)
    stream = ShuffledBatches(inputs, inputs, mask, batch_size=2, seed=1)
    for _ in range(6):
        batch = stream.next()
        rows = batch.inputs[:, 0] // 9                            # row i holds 9 i, 9 i + 1, ...
        length = int(lengths[rows].max())
        assert batch.inputs.shape == (2, length) and batch.mask.sum() == lengths[rows].sum()
        assert torch.equal(batch.inputs, inputs[rows, :length])


@dataclasses.dataclass
class CopyConfig:
    task: str = "copy"


def _copy_task(config, seed):
    """A toy token task: predict the input token (learnable by every model)."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(VOCAB, (64, 6), generator=g)
    mask = torch.ones_like(data, dtype=torch.bool)
    return SequenceTrainer(small_model(seed=seed), OptimiserConfig(lr=1e-2, clip=1.0),
                           ShuffledBatches(data, data, mask, batch_size=8, seed=seed),
                           {"valid": [TokenBatch(data[:16], data[:16], mask[:16])]})


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Through rfwp.train.execute: a checkpoint restores the model, Adam, the schedule and the data stream;
    a run killed after its checkpoint and resumed ends with the record of a run trained in one go."""
    schedule = Schedule(steps=12, eval_every=4, tokens=10**9, monitor="valid_loss")
    whole = execute("toy/copy", CopyConfig(), _copy_task, schedule, seed=0, scale="cpu",
                    results_dir=tmp_path / "a", cache_dir=tmp_path / "ca", progress=False)
    # the same run, interrupted: train 8 steps with a checkpoint, then drop the trainer (a crash) and resume
    interrupted = copy.deepcopy(schedule)
    interrupted.checkpoint_every = 8

    with pytest.raises(Crash):
        execute("toy/copy", CopyConfig(), crashing(_copy_task, at_step=9), interrupted, seed=0, scale="cpu",
                results_dir=tmp_path / "b", cache_dir=tmp_path / "cb", progress=False)
    resumed = execute("toy/copy", CopyConfig(), _copy_task, interrupted, seed=0, scale="cpu",
                      results_dir=tmp_path / "b", cache_dir=tmp_path / "cb", progress=False)
    assert resumed.resumed_from == 8
    assert resumed.history.drop(columns="wall_time").equals(whole.history.drop(columns="wall_time"))
    assert list(whole.history.tokens) == [4 * 8 * 6, 8 * 8 * 6, 12 * 8 * 6]   # tokens seen, counted by execute


def test_scoring_targets_in_the_model_equals_the_loss_on_its_logits():
    """score_targets (the model's own −log p(targets): an adaptive softmax that computes no other word's probability)
    gives the step, the gradients and the evaluation of cross-entropy on the full log-probabilities."""
    config = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, vocab_size=VOCAB,
                         tie_embeddings=True, adaptive_cutoffs=(4, 8))
    tokens = torch.randint(VOCAB, (4 * 12 + 1,), generator=torch.Generator().manual_seed(5))
    results = []
    for score_targets in (False, True):
        torch.manual_seed(0)
        trainer = SequenceTrainer(build_model("delta_rnn", config), OptimiserConfig(lr=0.0),
                                  ContiguousSegments(tokens, 4, 6), {"valid": list(ContiguousSegments(tokens, 2, 6))},
                                  carry_state=True, score_targets=score_targets)
        step = trainer.train_step(0)
        results.append((step["loss"], [p.grad.clone() for p in trainer.model.parameters()], trainer.evaluate()))
    (loss, grads, evaluation), (loss_scored, grads_scored, evaluation_scored) = results
    assert loss == pytest.approx(loss_scored, rel=1e-6)
    for a, b in zip(grads, grads_scored):
        torch.testing.assert_close(a, b)
    assert evaluation["valid_loss"] == pytest.approx(evaluation_scored["valid_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="score_targets gives the metrics no logits"):
        SequenceTrainer(build_model("delta_rnn", config), OptimiserConfig(), ContiguousSegments(tokens, 4, 6), {},
                        metrics=lambda logits, batch: {}, score_targets=True)
