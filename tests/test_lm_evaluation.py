"""Perplexity evaluation of the language models (rfwp.tasks.language_modelling.evaluation, RFWP App. A.1):
the batched sliding window against one window at a time, full context against one forward over the split,
dropout off and the training mode kept, and the errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rfwp import ModelConfig, build_model
from rfwp.tasks.language_modelling.evaluation import full_context_perplexity, sliding_window_perplexity

VOCAB = 11
SPLIT_LENGTH = 60
# (model, extra config): a fast weight model, the Transformer (KV cache, sinusoidal positions), the LSTM
# (no SequenceModel: logits from forward), and an adaptive softmax head (its own nll)
MODELS = {"delta_net": ("delta_net", {}), "transformer": ("transformer", {}),
          "lstm": ("lstm", {"lstm_hidden": 16}), "delta_lstm": ("delta_lstm", {}),
          "adaptive": ("delta_net", {"adaptive_cutoffs": (4, 8), "tie_embeddings": True})}


def tiny_model(key="delta_net", seed=0):
    """In training mode with dropout 0.1: the evaluation must switch dropout off itself."""
    name, extra = MODELS[key]
    torch.manual_seed(seed)
    return build_model(name, ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, vocab_size=VOCAB,
                                         dropout=0.1, **extra))


def random_split(length=SPLIT_LENGTH, seed=0):
    return torch.randint(VOCAB, (length,), generator=torch.Generator().manual_seed(seed))


def one_window_at_a_time(model, ids, window, stride):
    """Mean −log p over the split, plainly: window after window, each a fresh forward from the zero state;
    the first scores every position, each later one the positions new since the last window."""
    inputs, targets = ids[:-1], ids[1:]
    log_p = {}
    scored_up_to = 0
    model.eval()
    with torch.no_grad():
        while scored_up_to < len(targets):
            end = min(window if scored_up_to == 0 else scored_up_to + stride, len(targets))
            start = max(0, end - window)
            logits, _ = model(inputs[None, start:end])
            window_log_p = logits[0].log_softmax(-1)
            for t in range(scored_up_to, end):
                assert t not in log_p
                log_p[t] = window_log_p[t - start, targets[t]].item()
            scored_up_to = end
    model.train()
    assert sorted(log_p) == list(range(len(targets)))   # every token after the first, once
    return -sum(log_p.values()) / len(log_p)


def whole_split_nll(model, ids):
    """Mean −log p of one forward over the whole split from the zero state."""
    model.eval()
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    model.train()
    return F.cross_entropy(logits[0], ids[1:]).item()


@pytest.mark.parametrize("key", ["delta_net", "transformer", "lstm", "adaptive"])
@pytest.mark.parametrize("window, stride", [(8, 1), (8, 3), (9, 4), (12, 12), (100, 1)])
def test_sliding_window_equals_one_window_at_a_time(key, window, stride):
    """The 59 targets after the first window: 51 = 17·3 (whole strides), 50 = 12·4 + 2 and 47 = 3·12 + 11 (a last
    partial stride, also with stride = window); (100, 1): one window, longer than the split. max_tokens 1: one
    window per batch; 3·window: several batches, the last one smaller; 10,000: one batch."""
    model, ids = tiny_model(key), random_split()
    expected = one_window_at_a_time(model, ids, window, stride)
    for max_tokens in (1, 3 * window, 10_000):
        result = sliding_window_perplexity(model, ids, window=window, stride=stride, max_tokens=max_tokens)
        assert result.tokens == SPLIT_LENGTH - 1
        assert result.nll == pytest.approx(expected, rel=1e-5)
        assert result.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


@pytest.mark.parametrize("key", ["delta_net", "transformer"])
def test_window_covering_the_split_is_one_forward(key):
    """With window ≥ the split's 59 inputs there is one window: the whole split from the zero state."""
    model, ids = tiny_model(key), random_split()
    expected = whole_split_nll(model, ids)
    for window in (SPLIT_LENGTH - 1, 256):
        assert sliding_window_perplexity(model, ids, window=window).nll == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("key", ["delta_net", "transformer", "lstm", "delta_lstm", "adaptive"])
def test_full_context_is_one_forward_over_the_split(key):
    """Every model here carries its whole context in its state (fast weights, the recurrent states, the
    Transformer's cache of all past keys and values), so any segmentation gives one forward's result."""
    model, ids = tiny_model(key), random_split()
    expected = whole_split_nll(model, ids)
    for segment in (1, 7, 16, SPLIT_LENGTH - 1, 256):
        result = full_context_perplexity(model, ids, segment=segment)
        assert result.tokens == SPLIT_LENGTH - 1
        assert result.nll == pytest.approx(expected, rel=1e-5)
        assert result.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


def test_full_context_differs_from_the_sliding_window():
    """The carried state is used: with a window shorter than the split, the two evaluations disagree."""
    model, ids = tiny_model(), random_split()
    assert full_context_perplexity(model, ids).nll != pytest.approx(
        sliding_window_perplexity(model, ids, window=8).nll, rel=1e-3)


@pytest.mark.parametrize("evaluate", [lambda m, ids: sliding_window_perplexity(m, ids, window=8, stride=2),
                                      lambda m, ids: full_context_perplexity(m, ids, segment=8)])
def test_dropout_off_no_gradients_and_training_mode_restored(evaluate):
    model, ids = tiny_model(), random_split()
    grad_enabled = []
    hook = model.blocks[0].register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    first, second = evaluate(model, ids), evaluate(model, ids)
    hook.remove()
    assert grad_enabled and not any(grad_enabled)            # every forward ran under no_grad
    assert first == second                                   # dropout 0.1 would make them differ
    assert all(module.training for module in model.modules())
    model.eval()
    evaluate(model, ids)
    assert not any(module.training for module in model.modules())
    model.train()
    logits, _ = model(ids[None, :-1])
    assert logits.requires_grad                             # gradients are not left switched off


@pytest.mark.parametrize("call, message", [
    (lambda m, ids: sliding_window_perplexity(m, ids, window=0), "window must be a positive"),
    (lambda m, ids: sliding_window_perplexity(m, ids, window=8, stride=0), "stride must be a positive"),
    (lambda m, ids: sliding_window_perplexity(m, ids, window=8, stride=9), "stride must be at most window=8"),
    (lambda m, ids: sliding_window_perplexity(m, ids, max_tokens=0), "max_tokens must be a positive"),
    (lambda m, ids: full_context_perplexity(m, ids, segment=0), "segment must be a positive"),
    (lambda m, ids: full_context_perplexity(m, ids[:1]), "at least 2 tokens .*, got 1$"),
    (lambda m, ids: sliding_window_perplexity(m, ids[:0]), "at least 2 tokens .*, got 0$"),
    (lambda m, ids: full_context_perplexity(m, ids[None]), r"1-D long tensor .* got torch.int64 of shape \(1, 60\)"),
    (lambda m, ids: sliding_window_perplexity(m, ids.float()), "1-D long tensor .* got torch.float32"),
    (lambda m, ids: sliding_window_perplexity(m, ids.tolist()), "1-D long tensor .* got list"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model(), random_split())
