"""The translation Transformer (rfwp/tasks/translation/model.py, decoding.py) against loops of the paper's equations:
non-causal and causal linear attention as explicit fast weights, the decoder's carried state against recomputing
the prefix, beam search against the model's own log-probabilities and an exhaustive search, label smoothing by hand,
ICML Table 6's d_dot, a tiny copy task, the parameter count of the big model, and one clear error for bad input."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rfwp import paper
from rfwp.layers import normalised_sum_rule
from rfwp.tasks.translation.decoding import beam_search, greedy
from rfwp.tasks.translation.model import (ATTENTIONS, EPS, TRANSFORMER_BIG, Attention, CausalSelfAttention, Context,
                                          Transformer, TranslationConfig, attention_form, attention_form_is_cheaper,
                                          d_dot, fast_weight, label_smoothed_cross_entropy, parameter_count, read)
from rfwp.tasks.translation.subwords import BOS, EOS, PAD

TINY = TranslationConfig(vocabulary=20, d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1,
                         dropout=0.0, m=8, nu=2)
LINEAR = ("linear", "performer", "dpfp")


def tiny(attention: str, **changes) -> TranslationConfig:
    return replace(TINY, attention=attention, **changes)


def build(module, attention: str, seed: int = 0):
    torch.manual_seed(seed)
    return module(tiny(attention)).double().eval()


def sources() -> torch.Tensor:
    """Two source sentences ending with EOS, the second padded on the right."""
    torch.manual_seed(1)
    source = torch.randint(4, 20, (2, 6))
    source[:, -1] = EOS
    source[1, 3], source[1, 4:] = EOS, PAD
    return source


def project(layer: Attention, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """φ(q) from x, φ(k) and v from h, each (B, H, L, ·), by the layer's projections and feature map; FAVOR+'s
    queries and keys scaled by d_key^(−1/4) first."""
    def heads(y):
        return y.view(*y.shape[:2], layer.n_heads, layer.d_key).transpose(1, 2)
    q, k = layer.feature_map(heads(layer.q(x)) * layer.scale, heads(layer.k(h)) * layer.scale)
    return q, k, heads(layer.v(h))


@pytest.mark.parametrize("attention", LINEAR)
def test_non_causal_linear_attention_is_its_fast_weight(attention):
    layer = build(Attention, attention)
    torch.manual_seed(2)
    x, h = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    q, k, v = project(layer, x, h)
    y = torch.zeros_like(v[:, :, :3])
    for b in range(2):
        for head in range(2):
            W, z = torch.zeros(8, k.shape[-1], dtype=torch.float64), torch.zeros(k.shape[-1], dtype=torch.float64)
            for j in range(5):
                if mask[b, j]:   # W = Σ_j v_j ⊗ φ(k_j), z = Σ_j φ(k_j) over the real tokens
                    W, z = W + torch.outer(v[b, head, j], k[b, head, j]), z + k[b, head, j]
            for i in range(3):   # y_i = W φ(q_i) / (z · φ(q_i))
                y[b, head, i] = W @ q[b, head, i] / (z @ q[b, head, i] + EPS)
    expected = layer.merge(y)
    torch.testing.assert_close(layer(x, Context(h, mask)), expected)
    torch.testing.assert_close(layer(x, layer.remember(Context(h, mask))), expected)


@pytest.mark.parametrize("attention", LINEAR)
def test_causal_linear_self_attention_is_the_fast_weight_loop(attention):
    layer = build(CausalSelfAttention, attention)
    torch.manual_seed(3)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    q, k, v = project(layer, x, x)
    y = torch.zeros_like(v)
    W, z = torch.zeros(2, 2, 8, k.shape[-1], dtype=torch.float64), torch.zeros(2, 2, k.shape[-1], dtype=torch.float64)
    for t in range(5):   # ICML Eqs. 17-19: W_t = W_{t−1} + v_t ⊗ φ(k_t), z_t = z_{t−1} + φ(k_t)
        W = W + v[:, :, t, :, None] * k[:, :, t, None, :]
        z = z + k[:, :, t]
        y[:, :, t] = (W @ q[:, :, t, :, None]).squeeze(-1) / ((z * q[:, :, t]).sum(-1, keepdim=True) + EPS)
    out, state = layer(x)
    torch.testing.assert_close(out, layer.merge(y))
    torch.testing.assert_close(state.W, W)
    torch.testing.assert_close(state.z, z)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("pieces", [(1, 1, 1, 1, 1), (2, 3)])
def test_causal_self_attention_in_pieces_with_the_carried_state_is_the_whole(attention, pieces):
    layer = build(CausalSelfAttention, attention)
    torch.manual_seed(4)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    whole, whole_state = layer(x)
    outputs, state, start = [], None, 0
    for n in pieces:
        y, state = layer(x[:, start:start + n], state)
        outputs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole)
    for carried, expected in zip(state, whole_state):
        torch.testing.assert_close(carried, expected)
    if attention != "softmax":   # the fast weight does not grow with the sequence
        assert state.W.shape == (2, 2, 8, tiny(attention).d_dot)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_incremental_decoding_gives_the_logits_of_recomputing_the_prefix(attention):
    model = build(Transformer, attention)
    source = sources()
    target = torch.cat([torch.full((2, 1), BOS), torch.randint(4, 20, (2, 4))], dim=1)
    full = model(source, target)
    encoded = model.encode(source)
    memory, state = model.remember(encoded), None
    for t in range(target.shape[1]):
        logits, state = model.decode(target[:, t:t + 1], memory, state)
        prefix, _ = model.decode(target[:, :t + 1], (encoded,) * len(model.decoder))   # recomputed from scratch
        torch.testing.assert_close(logits[:, 0], prefix[:, -1])
        torch.testing.assert_close(logits[:, 0], full[:, t])
    assert state.position == target.shape[1]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padding_changes_nothing(attention):
    model = build(Transformer, attention)
    source = sources()
    target = torch.cat([torch.full((2, 1), BOS), torch.randint(4, 20, (2, 3))], dim=1)
    alone = model(source[1:, :4], target[1:])
    torch.testing.assert_close(model(source, target)[1:], alone)


def greedy_by_recomputing(model: Transformer, source: torch.Tensor, margin: int) -> list[int]:
    """The argmax token after the whole prefix, recomputed with a full forward at every step."""
    tokens = [BOS]
    limit = int((source != PAD).sum()) + margin
    while tokens[-1] != EOS:
        log_p = model(source, torch.tensor([tokens]))[0, -1].log_softmax(-1)
        log_p[[PAD, BOS]] = -math.inf
        if len(tokens) == limit:
            log_p[torch.arange(len(log_p)) != EOS] = -math.inf
        tokens.append(int(log_p.argmax()))
    return tokens[1:]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_beam_search_with_a_beam_of_one_is_greedy(attention):
    model = build(Transformer, attention)
    source = sources()
    expected = [greedy_by_recomputing(model, source[b:b + 1], margin=4) for b in range(2)]
    assert [nbest[0].tokens for nbest in beam_search(model, source, beam=1, margin=4)] == expected
    assert [h.tokens for h in greedy(model, source, margin=4)] == expected


@torch.no_grad()
def sentence_log_prob(model: Transformer, source: torch.Tensor, tokens: list[int]) -> float:
    """Σ_t log p(y_t | y_<t, x) by one full forward."""
    log_p = model(source, torch.tensor([[BOS] + tokens[:-1]]))[0].log_softmax(-1)
    return float(log_p[torch.arange(len(tokens)), tokens].sum())


@pytest.mark.parametrize("attention", ["softmax", "dpfp"])
@pytest.mark.parametrize("length_penalty", [1.0, 0.6])
def test_beam_search_scores_are_the_model_s_length_normalised_log_probabilities(attention, length_penalty):
    model = build(Transformer, attention)
    source = sources()
    nbest = beam_search(model, source, beam=3, length_penalty=length_penalty, margin=4)
    for b, hypotheses in enumerate(nbest):
        sentence = source[b:b + 1, :int((source[b] != PAD).sum())]
        assert 1 <= len(hypotheses) <= 3
        assert len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses)
        assert [h.score for h in hypotheses] == sorted((h.score for h in hypotheses), reverse=True)
        for h in hypotheses:
            assert h.tokens[-1] == EOS and EOS not in h.tokens[:-1]
            assert not {PAD, BOS} & set(h.tokens)
            assert len(h.tokens) <= sentence.shape[1] + 4
            assert h.log_prob == pytest.approx(sentence_log_prob(model, sentence, h.tokens), abs=1e-9)
            assert h.score == pytest.approx(h.log_prob / len(h.tokens) ** length_penalty, abs=1e-12)
        # the batch is searched as if each sentence were alone
        alone = beam_search(model, sentence, beam=3, length_penalty=length_penalty, margin=4)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hypotheses]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hypotheses], abs=1e-12)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_beam_search_drops_the_sentences_that_are_done(attention):
    """A sentence whose search is over leaves the batch (the decoder then runs on fewer rows), and every sentence
    gets what it gets searched alone."""
    model = build(Transformer, attention)
    torch.manual_seed(2)
    source = torch.randint(4, 20, (4, 9))
    for b, n in enumerate((9, 2, 6, 4)):   # lengths with EOS: maximum lengths 11, 4, 8 and 6 at a margin of 2
        source[b, n - 1], source[b, n:] = EOS, PAD
    rows = []
    decode = model.decode

    def counting(tokens, memory, state=None):
        rows.append(tokens.shape[0])
        return decode(tokens, memory, state)

    model.decode = counting
    batch = beam_search(model, source, beam=2, margin=2)
    assert rows[0] == 8 and rows[-1] < 8 and rows == sorted(rows, reverse=True)
    for b in range(4):
        alone = beam_search(model, source[b:b + 1, :int((source[b] != PAD).sum())], beam=2, margin=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batch[b]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in batch[b]], abs=1e-12)


def test_beam_search_as_wide_as_all_hypotheses_is_exhaustive():
    """With the source [EOS] and a margin of 1, a hypothesis is [EOS] or [t, EOS] for one of the 17 tokens other than
    PAD, BOS and EOS: a beam of 18 finishes all 18, ranked by the model's log-probability per token."""
    model = build(Transformer, "linear")
    source = torch.tensor([[EOS]])
    hypotheses = beam_search(model, source, beam=18, margin=1)[0]
    every = [[EOS]] + [[t, EOS] for t in range(20) if t not in (PAD, BOS, EOS)]
    scores = {tuple(y): sentence_log_prob(model, source, y) / len(y) for y in every}
    assert {tuple(h.tokens) for h in hypotheses} == set(scores)
    assert tuple(hypotheses[0].tokens) == max(scores, key=scores.get)
    assert hypotheses[0].score == pytest.approx(max(scores.values()), abs=1e-9)


def test_label_smoothing_by_hand():
    # p = (0.1, 0.2, 0.3, 0.4) at every position; targets 2, then PAD (ignored); 1, then 3
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).log().expand(2, 2, 4)
    target = torch.tensor([[2, PAD], [1, 3]])
    eps, log = 0.1, math.log
    # −(1 − ε) log p(y) − ε/(V − 1) Σ_{v ≠ y} log p(v), V = 4
    by_hand = [-(1 - eps) * log(0.3) - eps / 3 * (log(0.1) + log(0.2) + log(0.4)),
               -(1 - eps) * log(0.2) - eps / 3 * (log(0.1) + log(0.3) + log(0.4)),
               -(1 - eps) * log(0.4) - eps / 3 * (log(0.1) + log(0.2) + log(0.3))]
    assert float(label_smoothed_cross_entropy(logits, target, reduction="sum")) == pytest.approx(sum(by_hand))
    assert float(label_smoothed_cross_entropy(logits, target)) == pytest.approx(sum(by_hand) / 3)
    # padding counts for nothing, whatever its logits; ε = 0 is the plain cross-entropy
    other = logits.clone()
    other[0, 1] = torch.tensor([5.0, -3.0, 2.0, 0.0])
    assert float(label_smoothed_cross_entropy(other, target)) == pytest.approx(sum(by_hand) / 3)
    torch.manual_seed(5)
    random = torch.randn(2, 2, 4)
    assert float(label_smoothed_cross_entropy(random, target, epsilon=0.0)) == pytest.approx(
        float(F.cross_entropy(random.transpose(1, 2), target, ignore_index=PAD)))


def test_d_dot_of_icml_table_6():
    table = paper.table("icml", "T6")
    assert len(table) == 3
    for row in table.itertuples():
        assert d_dot("performer", 64, m=row.performer_m) == row.d_dot
        assert d_dot("dpfp", 64, nu=row.dpfp_nu) == row.d_dot
    assert d_dot("softmax", 64) == d_dot("linear", 64) == 64   # Table 1's d_dot of Standard and Linear
    assert replace(TRANSFORMER_BIG, attention="dpfp", nu=4).d_dot == 512


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_a_tiny_model_learns_to_copy(attention):
    torch.manual_seed(6)
    model = Transformer(tiny(attention))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    source = torch.randint(4, 20, (16, 6))
    source[:, -1] = EOS
    target_input = torch.cat([torch.full((16, 1), BOS), source[:, :-1]], dim=1)
    losses = []
    for _ in range(30):
        loss = label_smoothed_cross_entropy(model(source, target_input), source)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_transformer_big_and_its_parameter_count():
    c = TRANSFORMER_BIG
    assert (c.vocabulary, c.d_model, c.n_heads, c.d_key, c.d_ff, c.encoder_layers, c.decoder_layers, c.dropout) == \
        (32_000, 1024, 16, 64, 4096, 6, 6, 0.3)
    d, ff = 1024, 4096
    attention, feed_forward, norm = 4 * (d * d + d), d * ff + ff + ff * d + d, 2 * d
    by_hand = 32_000 * d + 6 * (attention + feed_forward + 2 * norm) + 6 * (2 * attention + feed_forward + 3 * norm)
    assert parameter_count(c) == by_hand == 209_125_376
    # φ has no parameters: every attention gives the same count
    assert {parameter_count(tiny(a)) for a in ATTENTIONS} == {sum(p.numel() for p in Transformer(TINY).parameters())}


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match=r"attention must be one of \('softmax', 'linear', 'performer', 'dpfp'\), "
                                         r"got 'favour'"):
        tiny("favour")
    with pytest.raises(ValueError, match="attention must be one of"):
        d_dot("elu", 64)
    with pytest.raises(ValueError, match="needs m"):
        d_dot("performer", 64)
    model = build(Transformer, "linear")
    source = sources()
    with pytest.raises(ValueError, match=r"source must be a \(batch, length\) tensor of token ids"):
        model(source[0], source)
    with pytest.raises(ValueError, match="source has batch size 2 but target_input has 1"):
        model(source, source[:1])
    memory = model.remember(model.encode(source))
    with pytest.raises(ValueError, match="the queries have batch size 3 but the remembered sequence has 2"):
        model.decode(torch.full((3, 1), BOS), memory)
    with pytest.raises(ValueError, match=r"inputs of shape \(batch, length, d_model=16\), got \(2, 5, 8\)"):
        model.decoder[0].self_attention(torch.zeros(2, 5, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="logits must be"):
        label_smoothed_cross_entropy(torch.zeros(2, 3, 20), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"needs model.eval\(\)"):
        beam_search(model.train(), source)


def test_the_attention_form_gives_the_fast_weight_s_numbers():
    """(φ(Q) φ(K)ᵀ) V / (φ(Q) φ(K)ᵀ 1 + ε) equals reading W = Σ_j v_j ⊗ φ(k_j) over the real keys, and, causal, the
    normalised sum rule step by step (ICML Sec. 3); the cost rule picks it for short sentences and wide fast weights."""
    torch.manual_seed(3)
    q, k = torch.rand(2, 3, 5, 8, dtype=torch.double), torch.rand(2, 3, 7, 8, dtype=torch.double)
    v = torch.randn(2, 3, 7, 4, dtype=torch.double)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    assert torch.allclose(attention_form(q, k, v, mask), read(fast_weight(k, v, mask), q))
    q = torch.rand(2, 3, 7, 8, dtype=torch.double)
    expected, state = normalised_sum_rule(q, k, v, eps=EPS)
    assert torch.allclose(attention_form(q, k, v, causal=True), expected)
    assert all(torch.allclose(a, b) for a, b in zip(fast_weight(k, v), state))
    assert attention_form_is_cheaper(40, 40, 512, 64) and attention_form_is_cheaper(40, 40, 64, 64)
    assert not attention_form_is_cheaper(400, 400, 64, 64)
