"""rfwp.layers against direct loops of the papers' equations, and the state/reset contract of every layer."""
from __future__ import annotations

import pytest
import torch

from oracle import assert_same_state, map_state, poisoned, state_tensors
from rfwp.layers import (Block, DeltaDeltaNetLayer, DeltaLSTMLayer, DeltaMLPLayer, DeltaNetLayer,
                         DeltaRNNLayer, FeatureMapConfig, LinearTransformerLayer, RecurrentDeltaNetLayer,
                         RelativeAttention, SoftmaxAttention, normalised_delta_rule, normalised_sum_rule,
                         sinusoidal_encoding)

D_MODEL, HEADS, D_HEAD = 12, 2, 4
REF = dict(implementation="reference")

LAYERS = {
    "linear_transformer": lambda: LinearTransformerLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "linear_transformer_attention": lambda: LinearTransformerLayer(
        D_MODEL, HEADS, D_HEAD, FeatureMapConfig(normalisation="attention"), **REF),
    "delta_net": lambda: DeltaNetLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "delta_net_attention": lambda: DeltaNetLayer(D_MODEL, HEADS, D_HEAD, FeatureMapConfig(normalisation="attention"),
                                                 **REF),
    "delta_rnn": lambda: DeltaRNNLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "delta_lstm": lambda: DeltaLSTMLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "delta_mlp": lambda: DeltaMLPLayer(D_MODEL, HEADS, D_HEAD, fast_layers=4, d_hidden=6, **REF),
    "delta_delta_net": lambda: DeltaDeltaNetLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "recurrent_delta_net": lambda: RecurrentDeltaNetLayer(D_MODEL, HEADS, D_HEAD, **REF),
    "softmax_attention": lambda: SoftmaxAttention(D_MODEL, HEADS, D_HEAD),
    "softmax_attention_memory": lambda: SoftmaxAttention(D_MODEL, HEADS, D_HEAD, memory=3),
    "relative_attention": lambda: RelativeAttention(D_MODEL, HEADS, D_HEAD),
    # a memory at least as long as the first piece of every cut below: the split sees what the whole sees
    "relative_attention_memory": lambda: RelativeAttention(D_MODEL, HEADS, D_HEAD, memory=7),
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return LAYERS[name]().double().eval()


def inputs(B=2, L=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D_MODEL, generator=g, dtype=torch.float64)
    reset = torch.zeros(B, L, dtype=torch.bool)
    reset[0, 0] = reset[0, 7] = reset[1, 3] = reset[1, 5] = True
    return x, reset


# ---------------------------------------------------------------- attention normalisation

def loop_normalised(q, k, v, beta, W, z, reset, eps=1e-6):
    """ICML Eqs. 17-19 (beta None) or Eqs. 26-28, one step at a time."""
    out = []
    for t in range(k.shape[2]):
        if reset is not None:
            keep = (~reset[:, t]).to(k.dtype)
            W, z = W * keep[:, None, None, None], z * keep[:, None, None]
        kt, qt, vt = k[:, :, t], q[:, :, t], v[:, :, t]
        if beta is None:
            W = W + vt[..., :, None] * kt[..., None, :]
        else:
            v_bar = (W @ kt[..., None]).squeeze(-1) / ((z * kt).sum(-1, keepdim=True) + eps)   # Eq. 27
            W = W + (beta[:, :, t, None] * (vt - v_bar))[..., :, None] * kt[..., None, :]
        z = z + kt                                                                             # Eq. 26
        out.append((W @ qt[..., None]).squeeze(-1) / ((z * qt).sum(-1, keepdim=True) + eps))  # Eq. 28
    return torch.stack(out, dim=2), W, z


@pytest.mark.parametrize("rule", ["sum", "delta"])
@pytest.mark.parametrize("with_reset", [False, True])
def test_attention_normalisation_equals_loop_of_icml_equations(rule, with_reset):
    g = torch.Generator().manual_seed(3)
    B, H, L, dk, dv = 2, 3, 9, 5, 4
    pos = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) + 0.1  # noqa: E731  φ(·) > 0
    q, k = pos(B, H, L, dk), pos(B, H, L, dk)
    v = torch.randn(B, H, L, dv, generator=g, dtype=torch.float64)
    beta = torch.rand(B, H, L, generator=g, dtype=torch.float64) if rule == "delta" else None
    W0, z0 = torch.randn(B, H, dv, dk, generator=g, dtype=torch.float64), 3 * pos(B, H, dk)
    reset = (torch.rand(B, L, generator=g) < 0.3) if with_reset else None
    leaves = [t.requires_grad_(True) for t in (q, k, v, W0, z0) + ((beta,) if beta is not None else ())]

    expected, W_ref, z_ref = loop_normalised(q, k, v, beta, W0, z0, reset)
    if rule == "sum":
        y, state = normalised_sum_rule(q, k, v, (W0, z0), reset, implementation="reference")
    else:
        y, state = normalised_delta_rule(q, k, v, beta, (W0, z0), reset, implementation="reference")
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(state.W, W_ref)
    torch.testing.assert_close(state.z, z_ref)
    cot = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (y, state.W, state.z)]
    grads = torch.autograd.grad((y, state.W, state.z), leaves, cot)
    grads_ref = torch.autograd.grad((expected, W_ref, z_ref), leaves, cot)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- Transformer-XL

def loop_relative_attention(layer: RelativeAttention, x, pieces: list[int]):
    """Dai et al. (2019) Sec. 3.3 one query at a time: query t of a piece attends to the ``layer.memory`` steps
    before the piece and to the piece's steps up to t, with A_tj = (q_t + u)·k_j + (q_t + v)·W_R r_{t−j}."""
    H, d = layer.n_heads, layer.d_head
    qkv = layer.slow(x).view(*x.shape[:2], H, 3, d)
    q, k, v = qkv.unbind(3)                                       # (B, L, H, d)
    r = layer.relative(sinusoidal_encoding(torch.arange(x.shape[1]), D_MODEL, x.dtype)).view(-1, H, d)
    u, w = layer.content_bias[:, 0], layer.position_bias[:, 0]    # (H, d)
    out, start = [], 0
    for length in pieces:
        for t in range(start, start + length):
            first = 0 if layer.memory is None else max(0, start - layer.memory)
            j = torch.arange(first, t + 1)
            scores = ((q[:, t, None] + u) * k[:, j]).sum(-1) + ((q[:, t, None] + w) * r[t - j]).sum(-1)
            weights = torch.softmax(scores / d ** 0.5, dim=1)     # (B, keys, H)
            out.append((weights[..., None] * v[:, j]).sum(1).flatten(1))
        start += length
    return layer.out(torch.stack(out, dim=1))


@pytest.mark.parametrize("memory, pieces", [(None, [11]), (None, [4, 7]), (3, [4, 2, 5]), (5, [1] * 11)])
def test_relative_attention_equals_transformer_xl_by_its_definition(memory, pieces):
    """Segment by segment, each starting from the last one's memory, as Transformer-XL reads a text."""
    torch.manual_seed(0)
    layer = RelativeAttention(D_MODEL, HEADS, D_HEAD, memory=memory).double().eval()
    with torch.no_grad():   # u and v are zero at initialisation: give them values the test can see
        layer.content_bias.normal_()
        layer.position_bias.normal_()
    x, _ = inputs()
    outs, state, start = [], None, 0
    for length in pieces:
        y, state = layer(x[:, start:start + length], state)
        outs.append(y)
        start += length
    torch.testing.assert_close(torch.cat(outs, dim=1), loop_relative_attention(layer, x, pieces))
    assert state.h.shape[1] == (11 if memory is None else memory)


# ---------------------------------------------------------------- the state contract of every layer

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("with_reset", [False, True])
@pytest.mark.parametrize("cut", [5, 7])
def test_split_sequence_equals_whole(name, with_reset, cut):
    """Outputs and final state; cut at 7, row 0 resets at the first step of the second piece."""
    layer = build(name)
    x, reset = inputs()
    reset = reset if with_reset else None
    y, state = layer(x, reset=reset)
    y1, s1 = layer(x[:, :cut], reset=None if reset is None else reset[:, :cut])
    y2, s2 = layer(x[:, cut:], s1, None if reset is None else reset[:, cut:])
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    assert_same_state(s2, state)


@pytest.mark.parametrize("name", LAYERS)
def test_reset_forgets_everything_before_it(name):
    layer = build(name)
    x, _ = inputs()
    reset = torch.zeros(2, 11, dtype=torch.bool)
    reset[:, 6] = True
    _, state = layer(x[:, :4])
    y, end = layer(x, reset=reset)
    x_other = x.clone()
    x_other[:, :6] = torch.randn(2, 6, D_MODEL, dtype=torch.float64)
    y_other, end_other = layer(x_other, state, reset)   # other inputs before the reset, and another initial state
    torch.testing.assert_close(y_other[:, 6:], y[:, 6:])
    assert not torch.allclose(y_other[:, :6], y[:, :6])
    assert_same_state(end_other, end)


@pytest.mark.parametrize("name", LAYERS)
def test_reset_overwrites_an_inf_or_nan_state(name):
    """A reset at the first step forgets an initial state full of inf and NaN (0 · inf would be NaN)."""
    layer = build(name)
    x, _ = inputs()
    reset = torch.zeros(2, 11, dtype=torch.bool)
    reset[:, 0] = True
    _, state = layer(x[:, :4])
    y, end = layer(x, reset=reset)
    y_bad, end_bad = layer(x, map_state(poisoned, state), reset)
    torch.testing.assert_close(y_bad, y)
    assert_same_state(end_bad, end)


@pytest.mark.parametrize("name", LAYERS)
def test_gradient_of_the_initial_state_equals_finite_differences(name):
    """The gradient reaches every floating tensor of the carried state, and is right: the outputs and the final
    state against the initial state, checked by finite differences."""
    layer = build(name)
    x, reset = inputs()
    _, state = layer(x[:, :4])
    start = state_tensors(map_state(lambda t: t.detach().requires_grad_(True), state))
    floating = [t for t in start if t.is_floating_point()]

    def run(*values):
        replaced = iter(values)
        y, end = layer(x[:, 4:], map_state(lambda t: next(replaced), state), reset[:, 4:])
        return (y, *(t for t in state_tensors(end) if t.is_floating_point()))

    assert torch.autograd.gradcheck(run, floating, fast_mode=True)


def test_attention_memory_limits_what_a_query_sees():
    """With memory m, the output at t does not depend on inputs before t − m, and does on t − m."""
    layer = build("softmax_attention_memory")
    x, _ = inputs(L=10)
    y, _ = layer(x)
    far, edge = x.clone(), x.clone()
    far[:, :5] += 1.0      # steps ≤ 4 are more than 3 before t = 8
    edge[:, 5] += 1.0      # step 5 = 8 − 3 is still visible at t = 8
    torch.testing.assert_close(layer(far)[0][:, 8:], y[:, 8:])
    assert not torch.allclose(layer(edge)[0][:, 8], y[:, 8])


def test_attention_cache_is_trimmed_to_memory_and_segment():
    layer = build("softmax_attention_memory")
    x, _ = inputs(L=10)
    _, cache = layer(x)
    assert cache.k.shape[2] == 3
    reset = torch.zeros(2, 10, dtype=torch.bool)
    reset[:, 9] = True
    _, cache = build("softmax_attention")(x, reset=reset)
    assert cache.k.shape[2] == 1 and cache.valid.all()


def test_attention_fast_path_equals_masked_path():
    layer = build("softmax_attention")
    x, _ = inputs()
    y, _ = layer(x)
    y_masked, _ = layer(x, reset=torch.zeros(2, 11, dtype=torch.bool))
    torch.testing.assert_close(y, y_masked)


# ---------------------------------------------------------------- fast nets built from several ops

def test_delta_mlp_equals_step_by_step_fast_mlp():
    """Programming all fast weights, then running the fast MLP of Eqs. 13-14 with the authors' residual
    pairs, one step at a time, equals the layer's layer-by-layer evaluation over the whole sequence."""
    layer = build("delta_mlp")
    x, _ = inputs()
    h, *parts = layer.slow_net(x, None)
    B, H, L, _ = h.shape
    Ws = [None] * 4
    ys = []
    for t in range(L):
        ht = h[:, :, t]
        for j in (0, 2):
            a = layer.norms[j // 2](ht)
            for i in (j, j + 1):
                k, v, b = (p[:, :, t] for p in parts[3 * i:3 * i + 3])
                a, k = layer.feature_maps[i](a, k)
                if Ws[i] is None:
                    Ws[i] = k.new_zeros(B, H, v.shape[-1], k.shape[-1])
                beta = torch.sigmoid(b)
                Ws[i] = Ws[i] + (beta * (v - (Ws[i] @ k[..., None]).squeeze(-1)))[..., None] * k[..., None, :]
                a = (Ws[i] @ a[..., None]).squeeze(-1)
            ht = ht + a
        ys.append(ht)
    expected = layer.project_out(torch.stack(ys, dim=2))
    y, state = layer(x)
    torch.testing.assert_close(y, expected)
    for W, W_ref in zip(state, Ws, strict=True):
        torch.testing.assert_close(W, W_ref)


def test_delta_delta_net_equals_step_by_step():
    """A slow Delta Net whose output at each step is the fast Delta Net's q, k, v, β (RFWP Sec. 3.1)."""
    layer = build("delta_delta_net")
    x, _ = inputs()
    q, k, v, b = layer.slow_net(x, None)
    B, H, L, d = q.shape
    S, W = q.new_zeros(B, H, 3 * d + 1, d), q.new_zeros(B, H, d, d)

    def delta(W, k, v, beta):
        return W + (beta[..., None] * (v - (W @ k[..., None]).squeeze(-1)))[..., None] * k[..., None, :]

    ys = []
    for t in range(L):
        qt, kt = layer.feature_map_slow(q[:, :, t], k[:, :, t])
        S = delta(S, kt, v[:, :, t], torch.sigmoid(b[:, :, t, 0]))
        u = (S @ qt[..., None]).squeeze(-1)
        fq, fk = layer.feature_map_fast(u[..., :d], u[..., d:2 * d])
        W = delta(W, fk, u[..., 2 * d:3 * d], torch.sigmoid(u[..., -1]))
        ys.append((W @ fq[..., None]).squeeze(-1))
    y, state = layer(x)
    torch.testing.assert_close(y, layer.project_out(torch.stack(ys, dim=2)))
    torch.testing.assert_close(state.slow, S)
    torch.testing.assert_close(state.fast, W)


def test_slow_net_sizes_match_the_authors():
    """Slow projection per head (original-code.md §3): Delta RNN 5d+2, Delta LSTM 15d+6, Delta Delta Net 5d+2."""
    d = D_HEAD
    assert sum(build("delta_rnn").sizes) == 5 * d + 2
    assert sum(build("delta_lstm").sizes) == 15 * d + 6
    assert sum(build("delta_delta_net").sizes) == 5 * d + 2
    assert sum(build("recurrent_delta_net").sizes) == 3 * d + 1


def test_block_is_pre_layer_norm_residual():
    torch.manual_seed(0)
    block = Block(DeltaNetLayer(D_MODEL, HEADS, D_HEAD, **REF), D_MODEL, 16).double()
    x, _ = inputs()
    y, _ = block(x)
    h = x + block.layer(block.norm_layer(x))[0]
    torch.testing.assert_close(y, h + block.ff(block.norm_ff(h)))


# ---------------------------------------------------------------- bad input

def test_wrong_d_model_names_expected_shape():
    layer = build("delta_net")
    with pytest.raises(ValueError, match=r"\(batch, length, d_model=12\)"):
        layer(torch.randn(2, 5, 7, dtype=torch.float64))


def test_reset_of_wrong_shape_or_dtype():
    layer = build("delta_rnn")
    x, _ = inputs()
    with pytest.raises(ValueError, match=r"must be \(batch, length\) = \(2, 11\)"):
        layer(x, reset=torch.zeros(11, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"reset.bool\(\)"):
        layer(x, reset=torch.zeros(2, 11))


@pytest.mark.parametrize("make, message", [
    (lambda: DeltaRNNLayer(8, 2, 4, FeatureMapConfig(normalisation="attention")), "use 'sum' or 'none'"),
    (lambda: DeltaRNNLayer(8, 2, 4, version="C"), "version must be one of"),
    (lambda: DeltaLSTMLayer(8, 2, 4, version="E"), "version must be one of"),
    (lambda: DeltaMLPLayer(8, 2, 4, fast_layers=3), "positive even number"),
    (lambda: RecurrentDeltaNetLayer(8, 2, 4, key_map="elu"), "key map must be one of"),
    (lambda: DeltaRNNLayer(8, 2, 4, recurrent_key_map="relu"), "key map must be one of"),
    (lambda: DeltaNetLayer(8, 2, 4, FeatureMapConfig(name="cosine")), "unknown feature map"),
    (lambda: SoftmaxAttention(8, 2, 4, memory=0), "positive number"),
])
def test_bad_layer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shift_rows_moves_row_i_left_by_length_minus_one_minus_i():
    from rfwp.layers import shift_rows
    x = torch.arange(2 * 3 * 7, dtype=torch.float64).view(2, 3, 7)   # L = 3 queries, K = 7 keys
    out = shift_rows(x)
    for i in range(3):
        for j in range(7 - 3 + i + 1):   # the columns a causal query i (step 4 + i) sees
            assert torch.equal(out[:, i, j], x[:, i, j + 3 - 1 - i])
