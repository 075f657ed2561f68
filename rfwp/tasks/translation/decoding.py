"""Beam search for the translation Transformer (``rfwp.tasks.translation.model``), ICML 2021 Sec. 6.2.

The search follows fairseq's generator (Ott et al. 2019), whose BLEU the paper reports: every step extends each of
the ``beam`` hypotheses of a sentence by every token, keeps the 2·beam best extensions, finishes those ending with
EOS among the first ``beam`` of them, and continues with the ``beam`` best that do not end. A sentence is done
when ``beam`` hypotheses have ended, or when it reaches its maximum length, where only EOS may follow. Finished
hypotheses are ranked by their log-probability divided by their length (EOS included) to the power
``length_penalty``.

Defaults: beam 4 (fairseq's WMT'14 En-De recipe for the big model, Ott et al. 2018), length penalty 1.0 (fairseq's
default: the mean token log-probability), and at most source length + 50 target tokens, EOS included (Vaswani et
al. 2017 Sec. 6.1: "maximum output length during inference to input length + 50"); the source length counts its
tokens without padding. PAD and BOS are never generated.

The decoder is run one token per step with its state carried (``Transformer.decode``): a linear-attention decoder
updates its fast weight W and key sum z in O(1) per step, a softmax decoder appends to its key/value cache. The
encoder runs once, and so does every layer's encoder-decoder attention memory (``Transformer.remember``: for linear
attention W = Σ_j v_j ⊗ φ(k_j) and z = Σ_j φ(k_j) per head), shared by the beams of a sentence. When beams are
reordered, the decoder state is reordered with them; a sentence that is done leaves the batch, so that the search
costs what its unfinished sentences need.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rfwp.tasks.translation.model import Transformer
from rfwp.tasks.translation.subwords import BOS, EOS, PAD

BEAM = 4
LENGTH_PENALTY = 1.0
MAX_LENGTH_MARGIN = 50


class Hypothesis(NamedTuple):
    tokens: list[int]   # y_1 … y_n EOS
    log_prob: float     # Σ_t log p(y_t | y_<t, x)
    score: float        # log_prob / len(tokens) ** length_penalty


def reorder(state, index: Tensor):
    """``state`` (tensors in nested tuples and NamedTuples, with ints and None) with batch rows ``index``."""
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, tuple):
        items = [reorder(item, index) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


@torch.no_grad()
def beam_search(model: Transformer, source: Tensor, beam: int = BEAM, length_penalty: float = LENGTH_PENALTY,
                margin: int = MAX_LENGTH_MARGIN) -> list[list[Hypothesis]]:
    """The finished hypotheses of each source sentence (source (B, S) token ids, right-padded), best first."""
    if model.training:
        raise ValueError("beam_search needs model.eval(): in training mode dropout and FAVOR+'s random features, "
                         "redrawn at every call, make each step's model a different one")
    if beam < 1:
        raise ValueError(f"beam must be a positive number of hypotheses, got {beam}")
    encoded = model.encode(source)
    B, K, V, device = source.shape[0], beam, model.config.vocabulary, source.device
    # row b·K + i holds the i-th hypothesis of sentence b; the K rows of a sentence share its memory
    memory = reorder(model.remember(encoded), torch.arange(B, device=device).repeat_interleave(K))
    max_length = encoded.mask.sum(1) + margin
    never = torch.zeros(V, dtype=torch.bool, device=device)
    never[[PAD, BOS]] = True
    not_eos = torch.ones(V, dtype=torch.bool, device=device)
    not_eos[EOS] = False
    tokens = source.new_full((B * K, 1), BOS)
    dtype = torch.promote_types(encoded.h.dtype, torch.float32)   # scores at least in float32, as the loss
    scores = torch.full((B, K), -math.inf, dtype=dtype, device=device)
    scores[:, 0] = 0.0   # the K rows start as one hypothesis, BOS: extend only the first
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    ids = list(range(B))   # the sentences still searched (their rows, in this order), by their index in source
    state = None
    while ids:
        n = len(ids)
        logits, state = model.decode(tokens[:, -1:], memory, state)
        log_p = F.log_softmax(logits[:, -1].to(scores.dtype), dim=-1).view(n, K, V).masked_fill(never, -math.inf)
        length = tokens.shape[1]   # of a hypothesis ending at this step, EOS included
        log_p = log_p.masked_fill((max_length <= length)[:, None, None] & not_eos, -math.inf)
        top, index = (scores.unsqueeze(-1) + log_p).view(n, K * V).topk(2 * K, dim=1)
        origin, token = index // V, index % V
        # EOS among the first K extensions ends a hypothesis (in rank order: nonzero lists rows, then columns)
        ends = ((token[:, :K] == EOS) & (top[:, :K] > -math.inf)).nonzero().tolist()
        if ends:
            prefixes, log_probs, origins = tokens[:, 1:].tolist(), top.tolist(), origin.tolist()
        for b, r in ends:
            if len(finished[ids[b]]) < K:
                y = prefixes[b * K + origins[b][r]] + [EOS]
                finished[ids[b]].append(Hypothesis(y, log_probs[b][r], log_probs[b][r] / len(y) ** length_penalty))
        # a sentence with K finished hypotheses or at its maximum length is done: its rows leave the search
        live = torch.tensor([b for b, limit in enumerate(max_length.tolist())
                             if len(finished[ids[b]]) < K and length < limit], dtype=torch.long, device=device)
        # each hypothesis has one EOS extension, so at least K of the 2K do not end: the best K continue
        keep = (token == EOS).int().argsort(dim=1, stable=True)[:, :K]
        origin, token, scores = (t.gather(1, keep)[live] for t in (origin, token, top))
        rows = (live.unsqueeze(1) * K + origin).view(-1)
        tokens = torch.cat([tokens[rows], token.view(-1, 1)], dim=1)
        state = reorder(state, rows)
        if len(live) < n:
            ids, max_length = [ids[b] for b in live.tolist()], max_length[live]
            memory = reorder(memory, (live.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1))
    return [sorted(hypotheses, key=lambda h: h.score, reverse=True) for hypotheses in finished]


def greedy(model: Transformer, source: Tensor, margin: int = MAX_LENGTH_MARGIN) -> list[Hypothesis]:
    """Greedy decoding: the most probable token at every step, beam search with a beam of 1."""
    return [hypotheses[0] for hypotheses in beam_search(model, source, beam=1, margin=margin)]
