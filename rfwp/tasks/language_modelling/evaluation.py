"""Perplexity of a language model on a split, the two ways of RFWP Appendix A.1 (original-code.md §6).

    result = sliding_window_perplexity(model, ids, window=256, stride=1)   # models trained on 256-token segments
    result = full_context_perplexity(model, ids, segment=256)              # the "+ full context" models of Table 1
    result.nll, result.perplexity, result.tokens

``ids`` is a split as one 1-D stream of token ids (``<eos>`` ending every line); the model reads ids[:-1] and
predicts ids[1:], so every token after the first is scored exactly once, with batch-1 semantics. Both run
under torch.no_grad() with dropout off (model.eval()), and give the model back in the training mode it had.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfwp.models import AdaptiveSoftmax, SequenceModel


class Perplexity(NamedTuple):
    nll: float         # mean negative log-likelihood per scored token (nats)
    perplexity: float  # exp(nll)
    tokens: int        # the number of tokens scored: len(ids) − 1


def sliding_window_perplexity(model: nn.Module, ids: Tensor, window: int = 256, stride: int = 1,
                              max_tokens: int = 8192) -> Perplexity:
    """Sliding-window evaluation (App. A.1, the authors' ``eval_sliding_window.py``): a window of ``window``
    tokens moves ``stride`` tokens at a time, each window read from a zero state; the first window scores all
    its positions, each later one only its last ``stride`` (the new tokens, each predicted from the ``window``
    input tokens up to it), and a last window ending at the split's end the targets left (a partial stride).

    The windows are independent, so they run as a batch of max(1, ``max_tokens`` // ``window``) at a time, with
    the results of one window at a time; ``max_tokens`` bounds the memory: the activations of that many
    positions, and the output layer's on the scored positions only (``stride`` per window)."""
    _check_positive(window=window, stride=stride, max_tokens=max_tokens)
    if stride > window:
        raise ValueError(f"stride must be at most window={window}, or tokens between windows go unscored; "
                         f"got stride={stride}")
    inputs, targets = _inputs_and_targets(model, ids)
    n = len(targets)

    def evaluate():
        first = min(window, n)
        total = float(_scored_nll(model, inputs[None, :first], targets[None, :first])[0].sum())
        # windows k = 1..K start at k·stride and score targets [window + (k−1)·stride, window + k·stride)
        later = max(n - window, 0) // stride
        if later:
            windows = inputs[stride:window + later * stride].unfold(0, window, stride)   # (K, window), a view
            scored = targets[window:window + later * stride].view(later, stride)
            per_batch = max(1, max_tokens // window)
            for i in range(0, later, per_batch):
                total += float(_scored_nll(model, windows[i:i + per_batch], scored[i:i + per_batch])[0].sum())
        # the last partial stride: a window ending at the split's end scores the targets left
        left = max(n - window, 0) - later * stride
        if left:
            total += float(_scored_nll(model, inputs[None, n - window:], targets[None, n - left:])[0].sum())
        return total

    return _in_eval_mode(model, evaluate, n)


def full_context_perplexity(model: nn.Module, ids: Tensor, segment: int = 256) -> Perplexity:
    """Full-context evaluation (App. A.1, "+ full context"; the authors' ``eval.py`` with
    ``--carry_over_fast_weight``): batch 1, the model's state (fast weights, recurrent states) carried through
    the whole split, read in segments of ``segment`` tokens, every token scored once. Under no_grad the
    carried state holds no graph, so the result does not depend on ``segment`` (up to rounding)."""
    _check_positive(segment=segment)
    inputs, targets = _inputs_and_targets(model, ids)

    def evaluate():
        total, state = 0.0, None
        for start in range(0, len(targets), segment):
            end = start + segment
            nll, state = _scored_nll(model, inputs[None, start:end], targets[None, start:end], state)
            total += float(nll.sum())
        return total

    return _in_eval_mode(model, evaluate, len(targets))


def _scored_nll(model: nn.Module, inputs: Tensor, targets: Tensor, state=None) -> tuple[Tensor, object]:
    """−log p(targets) (batch, n) at the last n = targets.shape[1] positions of inputs (batch, length), and
    the model's state after them. A SequenceModel runs its output layer only there (in a sliding window of
    stride 1, on 1 of the window's positions), with the adaptive softmax's own nll where it has one."""
    n = targets.shape[1]
    if isinstance(model, SequenceModel):
        h, state = model.features(inputs, state)
        h = h[:, -n:]
        if isinstance(model.head, AdaptiveSoftmax):
            return model.head.nll(h, targets), state
        logits = model.head(h)
    else:
        logits, state = model(inputs, state)
        logits = logits[:, -n:]
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none"), state


def _in_eval_mode(model: nn.Module, evaluate, tokens: int) -> Perplexity:
    """``evaluate()`` (the summed nll of ``tokens`` tokens, summed batch by batch in double precision) without
    gradients and dropout; the training mode is restored afterwards, whatever happens."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total = evaluate()
    finally:
        model.train(training)
    nll = total / tokens
    return Perplexity(nll, math.exp(nll), tokens)


def _inputs_and_targets(model: nn.Module, ids: Tensor) -> tuple[Tensor, Tensor]:
    """ids[:-1] and ids[1:] on the model's device, after checking ids is a 1-D stream of ≥ 2 token ids."""
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        got = f"{ids.dtype} of shape {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-D long tensor of token ids (the split as one stream), got {got}")
    if len(ids) < 2:
        raise ValueError(f"the split needs at least 2 tokens (an input and its next token to score), got {len(ids)}")
    ids = ids.to(next(model.parameters()).device)
    return ids[:-1], ids[1:]


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive number of tokens, got {value!r}")
