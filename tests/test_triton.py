"""Triton kernels (rfwp/ops/triton.py, rfwp/kernels/triton/) against the step-by-step reference, on CPU
under Triton's interpreter: outputs, final state and every gradient (inputs, slow weights, initial
state) on tiny awkward shapes. Select alone with ``pytest -m triton``.

With RFWP_TRITON_DEVICE=cuda (benchmarks/gpu_check.sh) the kernels run compiled on the GPU instead: inputs
and the reference stay on the CPU, and ``on_device`` moves each kernel's inputs to CUDA and its results back."""
import os

DEVICE = os.environ.get("RFWP_TRITON_DEVICE", "cpu")
if DEVICE == "cpu":
    # @triton.jit reads this when the kernels are defined, i.e. at the first Triton op of the process.
    os.environ["TRITON_INTERPRET"] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import rfwp.ops  # noqa: E402
import rfwp.ops.triton as tr  # noqa: E402
from oracle import (assert_matches_reference, assert_reset_overwrites_state, leaves, make_inputs,  # noqa: E402
                    state_tensors)
from rfwp.ops import reference  # noqa: E402

pytestmark = pytest.mark.triton


def on_device(fn):
    """``fn`` run on DEVICE: tensors (and state tuples) copied there, results copied back; gradients flow
    through both copies to the CPU leaves."""
    if DEVICE == "cpu":
        return fn

    def move(x, device):
        if isinstance(x, tuple):
            return type(x)(*(move(t, device) for t in x))
        return x.to(device) if isinstance(x, torch.Tensor) else x

    def run(**kwargs):
        out, state = fn(**{name: move(value, DEVICE) for name, value in kwargs.items()})
        return move(out, "cpu"), move(state, "cpu")
    return run


# (name, op whose reference it must equal, function)
KERNELS = [
    ("sum_rule", "sum_rule", tr.sum_rule),
    ("fused_recurrent_delta_rule", "delta_rule", tr.fused_recurrent_delta_rule),
    ("chunked_delta_rule", "delta_rule", tr.delta_rule),
    ("delta_rnn", "delta_rnn", tr.delta_rnn),
    ("delta_lstm", "delta_lstm", tr.delta_lstm),
    ("recurrent_delta_net", "recurrent_delta_net", tr.recurrent_delta_net),
]
KERNELS = [(name, op, on_device(fn)) for name, op, fn in KERNELS]
KERNEL_IDS = [name for name, _, _ in KERNELS]

# (B, H, L, d_key, d_value) and the (row, step) resets: L = 1; L past two WY chunks and two cell
# checkpoints (16 steps each) with resets inside a chunk, at the first step and on a chunk boundary;
# head sizes that are not powers of two, d_value over one value block (32); d = 128.
SHAPES = [
    ((1, 1, 1, 1, 1), []),
    ((2, 2, 35, 5, 7), [(1, 0), (0, 9), (1, 9), (0, 32)]),
    ((2, 1, 40, 17, 33), [(0, 3), (1, 16), (0, 33), (1, 34)]),
    ((1, 1, 5, 128, 128), [(0, 2)]),
]


@pytest.fixture(scope="module", autouse=True)
def interpreter():
    if tr.unsupported(torch.zeros(1, device=DEVICE), torch.zeros(1, device=DEVICE)) is not None:
        pytest.fail("the Triton kernels cannot run on CPU here: triton is not installed, or something defined "
                    "them before this module set TRITON_INTERPRET=1; run `pytest tests/test_triton.py` alone")


def inputs(op, shape, resets, dtype=torch.float32, seed=0, **kw):
    B, H, L, d_key, d_value = shape
    kwargs = make_inputs(op, B, H, L, d_key, d_value, dtype=dtype, seed=seed, reset_prob=0.0, **kw)
    if resets:
        reset = torch.zeros(B, L, dtype=torch.bool)
        for b, t in resets:
            reset[b, t] = True
        kwargs["reset"] = reset
    return kwargs


@pytest.mark.parametrize("shape,resets", SHAPES, ids=["L1", "L35-d5x7", "L40-d17x33", "d128"])
@pytest.mark.parametrize("name,op,fn", KERNELS, ids=KERNEL_IDS)
def test_matches_reference_float32(name, op, fn, shape, resets):
    assert_matches_reference(op, fn, inputs(op, shape, resets), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,op,fn", KERNELS, ids=KERNEL_IDS)
def test_matches_reference_without_state_or_reset(name, op, fn):
    assert_matches_reference(op, fn, inputs(op, (2, 1, 19, 6, 6), [], with_state=False), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,op,fn", KERNELS, ids=KERNEL_IDS)
def test_bfloat16_inputs(name, op, fn):
    """bfloat16 inputs, float32 state: equal to the float32 reference on the same (rounded) values."""
    kwargs = inputs(op, (2, 1, 20, 9, 9), [(0, 5), (1, 17)], seed=1)
    rounded = {n: v.detach().to(torch.bfloat16) if n != "state" and v.is_floating_point() else v
               for n, v in kwargs.items()}
    bf16 = {n: v.requires_grad_() if n != "state" and v.is_floating_point() else v for n, v in rounded.items()}
    f32 = {n: v.detach().float().requires_grad_() if n != "state" and v.is_floating_point() else v
           for n, v in rounded.items()}
    out, state = fn(**bf16)
    ref_out, ref_state = getattr(reference, op)(**f32)
    assert out.dtype == torch.bfloat16 and all(s.dtype == torch.float32 for s in state_tensors(state))
    results, ref_results = [out, *state_tensors(state)], [ref_out, *state_tensors(ref_state)]
    g = torch.Generator().manual_seed(2)
    cotangents = [torch.randn(r.shape, generator=g) for r in ref_results]
    loss = sum((r.float() * c).sum() for r, c in zip(results, cotangents))
    ref_loss = sum((r * c).sum() for r, c in zip(ref_results, cotangents))
    grads = torch.autograd.grad(loss, list(leaves(bf16).values()))
    ref_grads = torch.autograd.grad(ref_loss, list(leaves(f32).values()))
    for label, a, b in [("out", out, ref_out), *zip(leaves(bf16), grads, ref_grads)]:
        torch.testing.assert_close(a.float(), b.detach(), atol=3e-2, rtol=3e-2, msg=lambda m: f"{name} {label}: {m}")


@pytest.mark.parametrize("name,op,fn", KERNELS, ids=KERNEL_IDS)
def test_head_dim_beyond_maximum_raises(name, op, fn):
    d = tr.MAX_HEAD_DIM + 1
    dims = [(d, d)] if op == "recurrent_delta_net" else [(d, 4), (4, d)]  # the RDN has d_key = d_value
    for d_key, d_value in dims:
        with pytest.raises(ValueError, match=f"head dimensions up to {tr.MAX_HEAD_DIM}"):
            fn(**inputs(op, (1, 1, 2, d_key, d_value), []))


@pytest.mark.parametrize("fn,kwargs,message", [
    (tr.delta_rnn, {"version": "A"}, "version 'B'"),
    (tr.delta_lstm, {"version": "C"}, "version 'D'"),
    (tr.recurrent_delta_net, {"key_map": "elu_sum"}, "key_map 'softmax'"),
], ids=["delta_rnn", "delta_lstm", "recurrent_delta_net"])
def test_unsupported_variant_raises(fn, kwargs, message):
    op = fn.__name__
    with pytest.raises(ValueError, match=message):
        fn(**inputs(op, (1, 1, 2, 4, 4), []), **kwargs)


def test_float64_raises():
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        on_device(tr.delta_rule)(**inputs("delta_rule", (1, 1, 2, 4, 4), [], dtype=torch.float64))


@pytest.mark.parametrize("op", ["delta_rule", "delta_lstm"])
def test_selected_by_name_through_dispatch(op):
    public = getattr(rfwp.ops, op)
    zero = torch.zeros(1, device=DEVICE)
    assert rfwp.ops.resolve(op, zero, zero, "triton") is getattr(tr, op)
    assert_matches_reference(op, on_device(lambda **kw: public(**kw, implementation="triton")),
                             inputs(op, (1, 2, 7, 6, 6), [(0, 4)]), atol=1e-4, rtol=1e-4)


def test_import_is_lazy_and_cpu_needs_the_interpreter():
    """``import rfwp.ops.triton`` leaves triton unimported; without TRITON_INTERPRET, CPU tensors are refused."""
    code = (
        "import sys, torch, rfwp.ops, rfwp.ops.triton as tr\n"
        "assert 'triton' not in sys.modules, 'importing rfwp imported triton'\n"
        "x = torch.zeros(1, 1, 2, 4)\n"
        "assert 'interpreter' in tr.unsupported(x, x)\n"
        "try:\n"
        "    rfwp.ops.sum_rule(x, x, x, implementation='triton')\n"
        "except ValueError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('the triton sum_rule ran on CPU without the interpreter')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# Every kernel with the constexpr values the wrappers pass for d = 32.
COMPILE_FOR_SM80 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import rfwp.ops.triton as tr
assert tr._load_kernels() and not tr._interpreted
dims = dict(DK=32, DV=32, BK=32, BV=32)
inputs = ("q", "k", "v", "beta", "rk", "rv", "rbeta", "Rq", "Rk", "Rv")  # in the caller's dtype
kernels = [
    ("fused_recurrent", "fused_recurrent_fwd", dict(dims, DELTA=True)),
    ("fused_recurrent", "fused_recurrent_bwd", dict(dims, DELTA=True)),
    ("fused_recurrent", "fused_recurrent_bwd", dict(dims, DELTA=False)),
    ("chunked_delta_rule", "chunked_delta_fwd", dict(dims, C=tr.CHUNK)),
    ("chunked_delta_rule", "chunked_delta_bwd", dict(dims, C=tr.CHUNK)),
    ("delta_rnn", "delta_rnn_fwd", dict(D=32, BD=32, CK=tr.CHECKPOINT)),
    ("delta_rnn", "delta_rnn_bwd", dict(D=32, BD=32, CK=tr.CHECKPOINT)),
    ("delta_lstm", "delta_lstm_fwd", dict(D=32, BD=32, CK=tr.CHECKPOINT)),
    ("delta_lstm", "delta_lstm_bwd", dict(D=32, BD=32, CK=tr.CHECKPOINT)),
    ("recurrent_delta_net", "rdn_fwd", dict(dims, CK=tr.CHECKPOINT)),
    ("recurrent_delta_net", "rdn_bwd", dict(dims, CK=tr.CHECKPOINT)),
]
for module, name, constexprs in kernels:
    fn = getattr(tr._kernels[module], name)
    signature = {a: "constexpr" if a in constexprs else "i32" if a in ("L", "H", "NC")
                 else "*bf16" if a in inputs else "*fp32" for a in fn.arg_names}
    compiled = triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 80, 32))
    assert compiled.asm["cubin"], name
"""


@pytest.mark.slow
def test_kernels_compile_for_a_gpu_target():
    """What the interpreter cannot check: every kernel builds for sm_80 (Triton front end, LLVM, ptxas)
    with bfloat16 inputs. Needs no GPU; runs without the interpreter, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_SM80], env=env, cwd=root, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name,op,fn", KERNELS, ids=KERNEL_IDS)
def test_reset_overwrites_an_inf_or_nan_state(name, op, fn):
    """L = 20 crosses a WY chunk and a cell checkpoint (16 steps); d_value 33 spans two value blocks."""
    assert_reset_overwrites_state(op, fn, shape=(2, 1, 20, 5, 33), dtype=torch.float32, atol=1e-4, rtol=1e-4)


# (op, variant, what the dispatch must choose on CUDA): Triton implements Delta RNN B, Delta LSTM D and the
# softmax RDN; the other variants fall back to the reference.
CUDA_DISPATCH = [("delta_rnn", {"version": "A"}, "reference"), ("delta_rnn", {"version": "B"}, "triton"),
                 *[("delta_lstm", {"version": v}, "reference") for v in "ABC"],
                 ("delta_lstm", {"version": "D"}, "triton"),
                 ("recurrent_delta_net", {"key_map": "elu_sum"}, "reference"),
                 ("recurrent_delta_net", {"key_map": "softmax"}, "triton")]


@pytest.mark.parametrize("op,variant,chosen", CUDA_DISPATCH,
                         ids=[f"{op}-{'-'.join(v.values())}" for op, v, _ in CUDA_DISPATCH])
def test_cuda_dispatch_falls_back_for_variants_triton_lacks(op, variant, chosen, monkeypatch):
    """With the CUDA preference (Triton first; forced here for CPU tensors under the interpreter), every
    variant runs: the one Triton implements on Triton, the others on the reference, equal to the reference."""
    monkeypatch.setattr(rfwp.ops, "_CPU_PREFERENCE", rfwp.ops._CUDA_PREFERENCE)
    kwargs = {**inputs(op, (1, 2, 7, 6, 6), [(0, 4)]), **variant}
    assert_matches_reference(op, on_device(getattr(rfwp.ops, op)), kwargs, atol=1e-4, rtol=1e-4)
    k, v = (kwargs[name].detach().to(DEVICE) for name in "kv")
    assert rfwp.ops.resolve(op, k, v, **variant) is getattr(rfwp.ops.__dict__[chosen], op)
