"""The C++ CPU kernels (rfwp/ops/compiled.py) against the step-by-step reference: outputs, final state
and every gradient in float64 on awkward shapes; gradcheck of each autograd Function; float32
agreement; dispatch; the fallback when the extension cannot be built; and long-run stability."""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import rfwp.ops
from oracle import assert_matches_reference, assert_reset_overwrites_state, awkward_shapes, make_inputs
from rfwp.feature_maps import KEY_MAPS, elu_plus_one, sum_normalise
from rfwp.ops import compiled, reference

if shutil.which("c++") is None:
    pytest.skip("no C++ compiler: the compiled kernels fall back to the reference", allow_module_level=True)

# (op, extra keyword arguments, largest d): every op, every version and key map.
VARIANTS = [("delta_rule", {}, 128),
            *[("delta_rnn", {"version": v}, 128) for v in ("A", "B")],
            *[("delta_lstm", {"version": v}, 64) for v in reference.DELTA_LSTM_VERSIONS],
            *[("recurrent_delta_net", {"key_map": m}, 64) for m in KEY_MAPS]]
VARIANT_IDS = [f"{op}-{'-'.join(extra.values()) or 'plain'}" for op, extra, _ in VARIANTS]


def test_extension_builds():
    assert compiled.extension() is not None, compiled._failure
    for dtype in (torch.float32, torch.float64):
        assert compiled.unsupported(torch.zeros(1, dtype=dtype), torch.zeros(1, dtype=dtype)) is None


@pytest.mark.parametrize("shape_index", range(50))
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_matches_reference_float64(variant, shape_index):
    op, extra, max_d = variant
    shape = awkward_shapes(50, max_d=max_d)[shape_index]
    for with_state in (True, False):
        for reset_prob in (0.0, 0.3):
            kwargs = make_inputs(op, *shape, seed=shape_index, with_state=with_state, reset_prob=reset_prob)
            assert_matches_reference(op, getattr(compiled, op), {**kwargs, **extra})


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_resets_on_checkpoint_boundaries(variant):
    """Resets at step 0, on the first checkpoint (step 16 for d ≤ 16) and just before it, over 3 blocks."""
    op, extra, _ = variant
    kwargs = make_inputs(op, 2, 2, 40, 4, 4, seed=7, reset_prob=0.0)
    reset = torch.zeros(2, 40, dtype=torch.bool)
    reset[0, [0, 16, 32]] = True
    reset[1, [15, 33, 39]] = True
    assert_matches_reference(op, getattr(compiled, op), {**kwargs, **extra, "reset": reset})


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_float32_agrees(variant):
    op, extra, _ = variant
    for seed, shape in enumerate([(2, 2, 50, 16, 16), (1, 3, 33, 32, 8)]):
        kwargs = make_inputs(op, *shape, seed=seed, dtype=torch.float32)
        assert_matches_reference(op, getattr(compiled, op), {**kwargs, **extra}, atol=1e-4, rtol=1e-3)


def test_non_contiguous_inputs():
    kwargs = make_inputs("delta_rule", 2, 3, 20, 5, 4, seed=3)
    # Same values, stored (batch, length, heads, dim) and viewed back: strided, not contiguous.
    strided = {name: (t.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)
                      if name in ("q", "k", "v") else t) for name, t in kwargs.items()}
    assert not strided["q"].is_contiguous()
    assert_matches_reference("delta_rule", compiled.delta_rule, strided)


def _gradcheck(fn, inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def _reset(B, L):
    reset = torch.zeros(B, L, dtype=torch.bool)
    reset[0, 3] = reset[-1, L - 2] = True
    return reset


def test_gradcheck_delta_rule():
    # L = 20 crosses the first checkpoint (16 steps), so the replay of two blocks is checked.
    kw = make_inputs("delta_rule", 2, 1, 20, 3, 2, seed=0, reset_prob=0.0)
    _gradcheck(compiled.DeltaRuleFunction.apply,
               (kw["q"], kw["k"], kw["v"], kw["beta"], kw["state"], _reset(2, 20)))


@pytest.mark.parametrize("version", ["A", "B"])
def test_gradcheck_delta_rnn_recurrence(version):
    kw = make_inputs("delta_rnn", 2, 1, 18, 3, 3, seed=1, reset_prob=0.0)
    z = torch.randn(2, 1, 18, 3, dtype=torch.float64, requires_grad=True)
    s = kw["state"]
    _gradcheck(compiled.DeltaRNNRecurrence.apply,
               (z, kw["recurrent_k"], kw["recurrent_v"], kw["recurrent_beta"], s.R, s.y, _reset(2, 18), version))


@pytest.mark.parametrize("version", reference.DELTA_LSTM_VERSIONS)
def test_gradcheck_delta_lstm_recurrence(version):
    kw = make_inputs("delta_lstm", 2, 1, 6, 3, 3, seed=2, reset_prob=0.0)
    z = torch.randn(2, 1, 3, 6, 3, dtype=torch.float64, requires_grad=True)
    s = kw["state"]
    _gradcheck(compiled.DeltaLSTMRecurrence.apply,
               (z, kw["recurrent_k"], kw["recurrent_v"], kw["recurrent_beta"], s.R, s.c, s.y, _reset(2, 6), version))


@pytest.mark.parametrize("key_map", KEY_MAPS)
def test_gradcheck_recurrent_delta_net(key_map):
    kw = make_inputs("recurrent_delta_net", 2, 2, 6, 3, 3, seed=3, reset_prob=0.0)
    s = kw["state"]
    _gradcheck(compiled.RecurrentDeltaNetFunction.apply,
               (kw["q"], kw["k"], kw["v"], kw["beta_logit"], kw["R_q"], kw["R_k"], kw["R_v"], kw["R_beta"], s.W, s.y,
                _reset(2, 6), key_map))


@pytest.mark.parametrize("op, function", [("delta_rule", "DeltaRuleFunction"), ("delta_rnn", "DeltaRNNRecurrence"),
                                          ("delta_lstm", "DeltaLSTMRecurrence"),
                                          ("recurrent_delta_net", "RecurrentDeltaNetFunction")])
def test_dispatch_reaches_compiled(op, function):
    """By name and by default on CPU, ``rfwp.ops.<op>`` runs the compiled kernel, equal to the reference."""
    kwargs = make_inputs(op, 1, 2, 5, 4, 4, seed=0)
    assert rfwp.ops.resolve(op, kwargs["k"], kwargs["v"], "compiled") is getattr(compiled, op)
    assert rfwp.ops.resolve(op, kwargs["k"], kwargs["v"]) is getattr(compiled, op)
    out, _ = getattr(rfwp.ops, op)(**kwargs, implementation="compiled")
    assert type(out.grad_fn).__name__ == f"{function}Backward"
    assert_matches_reference(op, getattr(rfwp.ops, op), kwargs)


def test_unbuildable_extension_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(compiled, "_failure", None)
    monkeypatch.setenv("CXX", "no-such-compiler")
    x = torch.zeros(1)
    with pytest.warns(RuntimeWarning, match="no-such-compiler.*reference loop will be used"):
        assert "no-such-compiler" in compiled.unsupported(x, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compiled.unsupported(x, x) is not None
    kwargs = make_inputs("delta_rnn", 1, 1, 4, 2, 2, seed=0)
    out, _ = rfwp.ops.delta_rnn(**kwargs)
    assert "Recurrence" not in type(out.grad_fn).__name__
    with pytest.raises(RuntimeError, match="implementation=None"):
        compiled.delta_rule(**make_inputs("delta_rule", 1, 1, 4, 2, 2))


def test_unsupported_for_other_devices_and_dtypes():
    meta, half = torch.zeros(1, device="meta"), torch.zeros(1, dtype=torch.float16)
    assert "CPU tensors" in compiled.unsupported(meta, meta)
    assert "float32 or float64" in compiled.unsupported(half, half)
    with pytest.raises(ValueError, match="float32 or float64.*implementation=None"):
        rfwp.ops.delta_rule(**make_inputs("delta_rule", 1, 1, 3, 2, 2, dtype=torch.float16), implementation="compiled")


def test_bad_state_shape_is_one_clear_error():
    kwargs = make_inputs("delta_rule", 1, 2, 5, 4, 3, seed=0)
    kwargs["state"] = torch.zeros(1, 2, 4, 3, dtype=torch.float64)  # (d_key, d_value) swapped
    with pytest.raises(RuntimeError, match=r"state has shape \[1, 2, 4, 3\] but must be \[1, 2, 3, 4\]"):
        compiled.delta_rule(**kwargs)


def test_long_adversarial_run_stays_finite():
    """100,000 delta rule steps in float32 with values ~1e3, β near 1 and sum-normalised ELU+1 keys of
    inputs ~1e3 (nearly one-hot): outputs, final state and gradients stay finite and track the same run
    in float64, so neither the forward nor the block replay of the backward accumulates rounding."""
    g = torch.Generator().manual_seed(0)
    L, d = 100_000, 16
    # eps: ELU(x) + 1 = exp(x) is exactly 0 in float32 below x ≈ −104, and a few keys have every entry there.
    k = sum_normalise(elu_plus_one(1e3 * torch.randn(1, 1, L, d, generator=g)), eps=1e-6)
    q = k.roll(1, dims=2)
    v = 1e3 * torch.randn(1, 1, L, d, generator=g)
    beta = 1 - 1e-3 * torch.rand(1, 1, L, generator=g)
    runs = {}
    for dtype in (torch.float32, torch.float64):
        inputs = [t.detach().to(dtype).requires_grad_(True) for t in (q, k, v, beta)]
        out, W = compiled.delta_rule(*inputs)
        (out.sum() + W.sum()).backward()
        runs[dtype] = [out.detach(), W.detach(), *(t.grad for t in inputs)]
    for name, x32, x64 in zip(["out", "W", "dq", "dk", "dv", "dbeta"], runs[torch.float32], runs[torch.float64]):
        assert torch.isfinite(x32).all(), name
        assert (x32.double() - x64).abs().max() <= 1e-5 * x64.abs().max(), name


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_reset_overwrites_an_inf_or_nan_state(variant):
    op, extra, _ = variant
    assert_reset_overwrites_state(op, getattr(compiled, op), extra=extra)
