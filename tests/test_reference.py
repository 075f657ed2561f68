"""Closed forms and invariants of the step-by-step references and of the public dispatch."""
import pytest
import torch

from oracle import OPS, assert_reset_overwrites_state, assert_same_state, make_inputs, state_tensors
from rfwp import ops
from rfwp.ops import reference


def test_softmax_free_attention_is_the_sum_rule():
    """ICML Sec. 3.1, Eq. 8: y_i = V_i (K_iᵀ q_i) = (Σ_{j≤i} v_j ⊗ k_j) q_i."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 2, 9, 5, generator=g, dtype=torch.float64).unbind(0)
    v = torch.randn(3, 2, 9, 4, generator=g, dtype=torch.float64)
    scores = (q @ k.transpose(-1, -2)).tril()                  # causal K_iᵀ q_i, no softmax
    out, W = reference.sum_rule(q, k, v)
    torch.testing.assert_close(out, scores @ v)
    torch.testing.assert_close(W, v.transpose(-1, -2) @ k)     # W_L = Σ v_j ⊗ k_j (ICML Eq. 9)


def test_delta_rule_with_unit_beta_and_orthonormal_keys_retrieves_the_last_value():
    """With β = 1 and orthonormal keys, W k_j is the value last written for k_j (the sum rule adds them up)."""
    d, L = 6, 15
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].T
    which = torch.randint(0, d, (L,), generator=g)
    k = basis[which].view(1, 1, L, d)
    v = torch.randn(1, 1, L, 3, generator=g, dtype=torch.float64)
    _, W = reference.delta_rule(k, k, v, torch.ones(1, 1, L, dtype=torch.float64))
    for key in which.unique():
        last = (which == key).nonzero().max()
        torch.testing.assert_close(W[0, 0] @ basis[key], v[0, 0, last])


SLOW_WEIGHTS = ("R_q", "R_k", "R_v", "R_beta")  # the RDN's slow recurrent weights: not per step


def split_in_time(op, kwargs, t):
    """The per-step inputs of ``op`` cut at step t; slow weights and the state are not cut."""
    first, second = {}, {}
    for name, value in kwargs.items():
        if name in ("state", *SLOW_WEIGHTS):
            continue
        axis = 1 if name == "reset" else 3 if op == "delta_lstm" else 2
        first[name] = value.narrow(axis, 0, t)
        second[name] = value.narrow(axis, t, value.shape[axis] - t)
    slow = {n: kwargs[n] for n in SLOW_WEIGHTS if n in kwargs}
    return {**first, **slow}, {**second, **slow}


@pytest.mark.parametrize("op", ["sum_rule", "delta_rule", "delta_rnn", "delta_lstm", "recurrent_delta_net"])
def test_split_sequence_equals_whole(op):
    kw = make_inputs(op, 2, 2, 12, 4, 5, seed=3)
    fn = getattr(reference, op)
    out, state = fn(**kw)
    first, second = split_in_time(op, kw, 5)
    out1, mid = fn(**first, state=kw["state"])
    out2, end = fn(**second, state=mid)
    torch.testing.assert_close(torch.cat([out1, out2], dim=2), out)
    assert_same_state(end, state)


@pytest.mark.parametrize("op", OPS)
def test_reset_equals_starting_fresh(op):
    """A reset before step t makes steps t.. and the final state identical to those of a new sequence started
    from zero state at t."""
    kw = make_inputs(op, 1, 2, 10, 3, 3, seed=4, reset_prob=0)
    reset = torch.zeros(1, 10, dtype=torch.bool)
    reset[0, 6] = True
    fn = getattr(reference, op)
    out, end = fn(**kw, reset=reset)
    _, tail = split_in_time(op, kw, 6)
    fresh, fresh_end = fn(**tail)
    torch.testing.assert_close(out[:, :, 6:], fresh)
    assert_same_state(end, fresh_end)


@pytest.mark.parametrize("op", OPS)
def test_gradient_of_the_initial_state_equals_finite_differences(op):
    """The gradient reaches the carried state, and is right: outputs and final state against the state, checked
    by finite differences (a reset at step 3 of one row cuts the state off there)."""
    kw = make_inputs(op, 2, 1, 5, 3, 3, seed=5, reset_prob=0.0)
    kw["reset"] = torch.zeros(2, 5, dtype=torch.bool)
    kw["reset"][1, 3] = True
    state = kw.pop("state")

    def run(*tensors):
        out, end = getattr(reference, op)(**kw, state=type(state)(*tensors) if isinstance(state, tuple) else tensors[0])
        return (out, *state_tensors(end))

    assert torch.autograd.gradcheck(run, tuple(state_tensors(state)))


@pytest.mark.parametrize("bad, message", [
    (dict(beta=torch.rand(2, 3, 7, 1)), "beta has shape"),
    (dict(v=torch.rand(2, 3, 6, 4)), "v has shape"),
    (dict(q=torch.rand(2, 3, 7, 6)), "q has shape"),
    (dict(reset=torch.zeros(2, 6, dtype=torch.bool)), "reset has shape"),
    (dict(reset=torch.zeros(2, 7)), "reset must be a bool"),
    (dict(k=torch.rand(2, 7, 5)), "permute"),
])
def test_bad_shapes_raise_one_clear_error(bad, message):
    kw = dict(q=torch.rand(2, 3, 7, 5), k=torch.rand(2, 3, 7, 5), v=torch.rand(2, 3, 7, 4), beta=torch.rand(2, 3, 7))
    kw.update(bad)
    with pytest.raises(ValueError, match=message):
        ops.delta_rule(**kw)


def test_unknown_implementation_and_version_raise():
    kw = make_inputs("delta_rnn", 1, 1, 3, 2, 2, with_state=False, reset_prob=0)
    with pytest.raises(ValueError, match="unknown implementation"):
        ops.delta_rnn(**kw, implementation="cuda")
    with pytest.raises(ValueError, match="version must be"):
        ops.delta_rnn(**kw, version="C", implementation="reference")


@pytest.mark.parametrize("op, bad_state, message", [
    ("delta_rule", torch.zeros(1, 2, 3, 3), "state.W has shape"),
    ("delta_rule", (torch.zeros(1, 2, 4, 3),), "state must be the fast weight tensor"),
    ("delta_rnn", torch.zeros(1, 2, 4, 3), "state must be a DeltaRNNState"),
    ("recurrent_delta_net", reference.RDNState(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2)), "state.y has shape"),
])
def test_wrong_state_raises_one_clear_error(op, bad_state, message):
    kw = make_inputs(op, 1, 2, 5, 3, 4, with_state=False, reset_prob=0)
    with pytest.raises(ValueError, match=message):
        getattr(ops, op)(**kw, state=bad_state, implementation="reference")


def test_delta_lstm_needs_three_gates():
    kw = make_inputs("delta_lstm", 1, 1, 3, 2, 2, with_state=False, reset_prob=0)
    kw.update(q=kw["q"][:, :, :2], k=kw["k"][:, :, :2])
    with pytest.raises(ValueError, match="2 gates on axis 2 but must have 3"):
        ops.delta_lstm(**kw)


def test_rdn_elu_sum_key_map_does_not_underflow_in_float32():
    """ELU(x) + 1 rounds to 0 in float32 below x ≈ −17; with every pre-activation there, a naive φ(x)/Σφ(x)
    is 0/0. The RDN's "elu_sum" map must stay finite and equal the float64 run."""
    kw = make_inputs("recurrent_delta_net", 1, 2, 6, 4, 4, seed=6, dtype=torch.float32, reset_prob=0,
                     with_state=False)
    kw = {n: t.detach() for n, t in kw.items()}
    kw["q"], kw["k"] = kw["q"] - 40, kw["k"] - 40
    out, state = reference.recurrent_delta_net(**kw, key_map="elu_sum")
    out64, state64 = reference.recurrent_delta_net(**{n: t.double() for n, t in kw.items()}, key_map="elu_sum")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, out64.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.W, state64.W.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op", OPS)
def test_reset_overwrites_an_inf_or_nan_state(op):
    assert_reset_overwrites_state(op, getattr(reference, op))
