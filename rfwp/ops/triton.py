"""Triton GPU kernels of every fast weight update rule, with hand-written backward passes.

Same contract as ``rfwp.ops.reference`` (initial state in, final state out, gradient into the initial
state, optional per-step ``reset``); float32, bfloat16 or float16 inputs, float32 state and float32
arithmetic inside; outputs in the inputs' dtype. Kernel sources live in ``rfwp/kernels/triton``:

  sum_rule                     fused recurrent kernel (fused_recurrent.py)
  delta_rule                   chunkwise WY kernel, chunks of ``CHUNK`` steps (chunked_delta_rule.py)
  fused_recurrent_delta_rule   fused recurrent kernel (fused_recurrent.py); same results as delta_rule
  delta_rnn (version B)        delta_rule for W q, then the recurrent-part kernel (delta_rnn.py)
  delta_lstm (version D)       delta_rule for the three W_g q_g, then the cell kernel (delta_lstm.py)
  recurrent_delta_net          one kernel for the whole recurrence, softmax key map (recurrent_delta_net.py)

Every kernel takes head dimensions (d_key and d_value) up to ``MAX_HEAD_DIM`` = 128 and raises a
ValueError beyond. Backward passes store no per-step fast weights: the sum/delta rule kernels rebuild
W in a second sweep, the WY kernel keeps the state at chunk starts, and the recurrent cells keep it
every ``CHECKPOINT`` steps and recompute in between; resets and the initial state's gradient are exact.

Verification (tests/test_triton.py): under Triton's interpreter on CPU, outputs, final state and
every gradient (inputs, recurrent slow weights, initial state) equal the step-by-step reference
within 1e-5 in float32 (the tests assert 1e-4), and within 3e-2 for bfloat16 inputs against the
float32 reference; every kernel also builds for an sm_80 target (Triton front end, LLVM, ptxas; no GPU
needed). The kernels have not yet been run or timed on a GPU. In the sm_80 builds at d = 128 the
backward of the WY kernel and of the one-program-per-head cells spill registers: tune there first.

The autograd Functions and kernels use short names: rk, rv, rbeta for the Delta RNN/LSTM's recurrent_k,
recurrent_v, recurrent_beta; for the RDN, beta for beta_logit and Rq, Rk, Rv, rbeta for R_q, R_k, R_v, R_beta.

Import is lazy: ``import rfwp.ops.triton`` does not import triton. The kernels are defined on the
first call of an op or of ``unsupported``; to run them on CPU tensors under the interpreter, set the
environment variable TRITON_INTERPRET=1 before that first call.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import Tensor

from .reference import DeltaLSTMState, DeltaRNNState, RDNState

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels" / "triton"   # rfwp/kernels/triton (package data)
MAX_HEAD_DIM = 128
CHUNK = 16        # steps per chunk of the WY delta rule (32 doubles its registers)
CHECKPOINT = 16   # steps between the states the recurrent cells store for their backward
VALUE_BLOCK = 32  # value rows of W per program in the sum and delta rule kernels
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The variants the kernels implement (rfwp.ops runs the others on the reference): the Delta RNN and Delta LSTM
# of RFWP Table 1, and the RDN with the authors' softmax key map.
VARIANTS = {"delta_rnn": {"version": ("B",)}, "delta_lstm": {"version": ("D",)},
            "recurrent_delta_net": {"key_map": ("softmax",)}}

_PACKAGE = "rfwp_triton_kernels"
_KERNEL_FILES = ("fused_recurrent", "chunked_delta_rule", "delta_rnn", "delta_lstm", "recurrent_delta_net")
_kernels: dict[str, types.ModuleType] = {}
_interpreted = False


def _load_kernels() -> bool:
    """Import triton and define every kernel, once; False when triton is not installed."""
    global _interpreted
    if _kernels:
        return True
    try:
        import triton
    except ImportError:
        return False
    # kernels/ is not a Python package: register kernels/triton under a private name so that its
    # files can import their shared device functions (fast_weight_step.py) relatively.
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(KERNEL_DIR)]
    sys.modules.setdefault(_PACKAGE, package)
    modules = {}
    for name in _KERNEL_FILES:
        spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.{name}", KERNEL_DIR / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[name]
        spec.loader.exec_module(modules[name])
    _kernels.update(modules)
    # @triton.jit reads TRITON_INTERPRET when a kernel is defined: that fixes the mode for good.
    _interpreted = bool(triton.knobs.runtime.interpret)
    return True


def unsupported(k: Tensor, v: Tensor, *, op: str | None = None, version: str | None = None,
                key_map: str | None = None) -> str | None:
    """Why these kernels cannot take these keys and values (of ``op``, in this ``version`` or with this
    ``key_map``), or None: they run on CUDA tensors (or on CPU tensors under Triton's interpreter), in float32,
    bfloat16 or float16, with head dimensions ≤ 128, and implement the VARIANTS only."""
    if not _load_kernels():
        return "the Triton kernels need the triton package, which is not installed"
    for name, value in (("version", version), ("key_map", key_map)):
        have = VARIANTS.get(op, {}).get(name)
        if value is not None and have is not None and value not in have:
            return f"the Triton {op} implements {name} {' or '.join(map(repr, have))} only, got {value!r}"
    if not (k.is_cuda or (_interpreted and k.device.type == "cpu")):
        return (f"the Triton kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter "
                f"(set TRITON_INTERPRET=1 before the first Triton op); got {k.device}")
    if k.dtype not in DTYPES:
        return f"the Triton kernels take float32, bfloat16 or float16 inputs, got {k.dtype}"
    for name, d in (("d_key", k.shape[-1]), ("d_value", v.shape[-1])):
        if d > MAX_HEAD_DIM:
            return (f"the Triton kernels support head dimensions up to {MAX_HEAD_DIM}, got {name}={d}; "
                    f"use more heads of a smaller size")
    return None


def _prepare(op: str, k: Tensor, v: Tensor, **variant) -> None:
    """One clear error for inputs these kernels cannot take."""
    reason = unsupported(k, v, op=op, **variant)
    if reason is not None:
        raise ValueError(f"{op}: {reason}; implementation='reference' runs any input")


def _block(d: int) -> int:
    # tl.dot needs every block dimension to be at least 16
    return max(16, 1 << (d - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _warps(tile: int) -> int:
    """Warps for a program whose largest register tile has ``tile`` elements. Chosen to keep register
    spills low in sm_80 builds (ptxas -v); not yet timed on a GPU."""
    return 4 if tile <= 1024 else 8 if tile <= 4096 else 16


def _initial(state: Tensor | None, shape: tuple, like: Tensor, name: str) -> Tensor:
    """The initial state as contiguous float32 (zeros when None)."""
    if state is None:
        return like.new_zeros(shape, dtype=torch.float32)
    if tuple(state.shape) != tuple(shape):
        raise ValueError(f"initial state {name} has shape {tuple(state.shape)} but must be {tuple(shape)}")
    return state.float().contiguous()


def _keep(reset: Tensor | None, B: int, L: int, like: Tensor) -> Tensor:
    """(B, L) float32: 0 where the state is zeroed before the step, else 1."""
    if reset is None:
        return like.new_ones(B, L, dtype=torch.float32)
    return (~reset).to(device=like.device, dtype=torch.float32).contiguous()


def _sum_blocks(partial: Tensor, like: Tensor) -> Tensor:
    """Key-side gradients written per value block, summed and shaped like ``like``."""
    return partial.sum(0).view(like.shape).to(like.dtype)


def _gradient_buffers(k: Tensor, v: Tensor, value_blocks: int):
    """dq, dk, dβ with one slice per value block (each block's program writes its own; ``_sum_blocks``
    adds them), and dv."""
    B, H, L, DK = k.shape
    dq = k.new_empty(value_blocks, B * H, L, DK, dtype=torch.float32)
    return (dq, torch.empty_like(dq), k.new_empty(value_blocks, B * H, L, dtype=torch.float32),
            k.new_empty(B, H, L, v.shape[-1], dtype=torch.float32))


class _FusedRecurrent(torch.autograd.Function):
    """Sum rule (``beta`` None) or delta rule, fused recurrent kernel; q, k, v (B, H, L, d) contiguous."""

    @staticmethod
    def forward(ctx, q, k, v, beta, W0, keep):
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        is_delta = beta is not None
        out = k.new_empty(B, H, L, DV, dtype=torch.float32)
        W = torch.empty_like(W0)
        delta = torch.empty_like(out) if is_delta else out
        BK, BV = _block(DK), min(_block(DV), VALUE_BLOCK)
        _kernels["fused_recurrent"].fused_recurrent_fwd[(B * H, _cdiv(DV, BV))](
            q, k, v, beta if is_delta else keep, keep, W0, out, W, delta, L, H,
            DK=DK, DV=DV, BK=BK, BV=BV, DELTA=is_delta, num_warps=_warps(BK * BV))
        ctx.save_for_backward(q, k, v, beta, keep, W0, delta if is_delta else None)
        return out, W

    @staticmethod
    def backward(ctx, d_out, dW):
        q, k, v, beta, keep, W0, delta = ctx.saved_tensors
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        is_delta = beta is not None
        BK, BV = _block(DK), min(_block(DV), VALUE_BLOCK)
        NV = _cdiv(DV, BV)
        dq, dk, dbeta, dv = _gradient_buffers(k, v, NV)
        dW0 = torch.empty_like(W0)
        _kernels["fused_recurrent"].fused_recurrent_bwd[(B * H, NV)](
            q, k, v, beta if is_delta else keep, keep, W0, delta if is_delta else dv,
            d_out.contiguous(), dW.contiguous(), dq, dk, dv, dbeta, dW0, L, H,
            DK=DK, DV=DV, BK=BK, BV=BV, DELTA=is_delta, num_warps=_warps(BK * BV))
        dbeta = _sum_blocks(dbeta, beta) if is_delta else None
        return _sum_blocks(dq, q), _sum_blocks(dk, k), dv.to(v.dtype), dbeta, dW0, None


class _ChunkedDeltaRule(torch.autograd.Function):
    """Delta rule, chunkwise WY kernel; q, k, v (B, H, L, d) and beta (B, H, L) contiguous."""

    @staticmethod
    def forward(ctx, q, k, v, beta, W0, keep):
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        NC = _cdiv(L, CHUNK)
        out = k.new_empty(B, H, L, DV, dtype=torch.float32)
        W = torch.empty_like(W0)
        states = k.new_empty(B * H, NC, DV, DK, dtype=torch.float32)
        BK, BV = _block(DK), min(_block(DV), VALUE_BLOCK)
        _kernels["chunked_delta_rule"].chunked_delta_fwd[(B * H, _cdiv(DV, BV))](
            q, k, v, beta, keep, W0, out, W, states, L, H, NC,
            DK=DK, DV=DV, BK=BK, BV=BV, C=CHUNK, num_warps=_warps(BK * BV))
        ctx.save_for_backward(q, k, v, beta, keep, states)
        return out, W

    @staticmethod
    def backward(ctx, d_out, dW):
        q, k, v, beta, keep, states = ctx.saved_tensors
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        NC = states.shape[1]
        BK, BV = _block(DK), min(_block(DV), VALUE_BLOCK)
        NV = _cdiv(DV, BV)
        dq, dk, dbeta, dv = _gradient_buffers(k, v, NV)
        dW0 = k.new_empty(B, H, DV, DK, dtype=torch.float32)
        _kernels["chunked_delta_rule"].chunked_delta_bwd[(B * H, NV)](
            q, k, v, beta, keep, states, d_out.contiguous(), dW.contiguous(),
            dq, dk, dv, dbeta, dW0, L, H, NC, DK=DK, DV=DV, BK=BK, BV=BV, C=CHUNK, num_warps=_warps(BK * BV))
        return _sum_blocks(dq, q), _sum_blocks(dk, k), dv.to(v.dtype), _sum_blocks(dbeta, beta), dW0, None


class _DeltaRNNCell(torch.autograd.Function):
    """y_t = z_t + R_t softmax(y_{t−1}) (Delta RNN B, Eq. 12); z (B, H, L, d) float32."""

    @staticmethod
    def forward(ctx, z, rk, rv, rbeta, R0, y0, keep):
        B, H, L, D = z.shape
        NC = _cdiv(L, CHECKPOINT)
        out = torch.empty_like(z)
        R, y = torch.empty_like(R0), torch.empty_like(y0)
        R_ckpt = z.new_empty(B * H, NC, D, D)
        y_ckpt = z.new_empty(B * H, NC, D)
        BD = _block(D)
        _kernels["delta_rnn"].delta_rnn_fwd[(B * H,)](
            z, rk, rv, rbeta, keep, R0, y0, out, R, y, R_ckpt, y_ckpt, L, H, NC,
            D=D, BD=BD, CK=CHECKPOINT, num_warps=_warps(BD * BD))
        ctx.save_for_backward(z, rk, rv, rbeta, keep, R_ckpt, y_ckpt)
        return out, R, y

    @staticmethod
    def backward(ctx, d_out, dR, dy):
        z, rk, rv, rbeta, keep, R_ckpt, y_ckpt = ctx.saved_tensors
        B, H, L, D = z.shape
        NC = R_ckpt.shape[1]
        R_scratch = z.new_empty(B * H, CHECKPOINT, D, D)
        y_scratch = z.new_empty(B * H, CHECKPOINT, D)
        dz, drk, drv = (z.new_empty(B, H, L, D) for _ in range(3))
        drbeta = z.new_empty(B, H, L)
        dR0, dy0 = z.new_empty(B, H, D, D), z.new_empty(B, H, D)
        BD = _block(D)
        _kernels["delta_rnn"].delta_rnn_bwd[(B * H,)](
            rk, rv, rbeta, keep, z, R_ckpt, y_ckpt, R_scratch, y_scratch, d_out.contiguous(),
            dR.contiguous(), dy.contiguous(), dz, drk, drv, drbeta, dR0, dy0, L, H, NC,
            D=D, BD=BD, CK=CHECKPOINT, num_warps=_warps(BD * BD))
        return dz, drk.to(rk.dtype), drv.to(rv.dtype), drbeta.to(rbeta.dtype), dR0, dy0, None


class _DeltaLSTMCell(torch.autograd.Function):
    """Delta LSTM D cell (Eqs. 36-40) given z_g = W_g q_g; z, rk, rv (B, H, 3, L, d), rbeta (B, H, 3, L)."""

    @staticmethod
    def forward(ctx, z, rk, rv, rbeta, R0, c0, y0, keep):
        B, H, _, L, D = z.shape
        NC = _cdiv(L, CHECKPOINT)
        out = z.new_empty(B, H, L, D)
        R, c, y = torch.empty_like(R0), torch.empty_like(c0), torch.empty_like(y0)
        R_ckpt = z.new_empty(B * H, NC, 3, D, D)
        cy_ckpt = z.new_empty(B * H, NC, 2, D)
        BD = _block(D)
        _kernels["delta_lstm"].delta_lstm_fwd[(B * H,)](
            z, rk, rv, rbeta, keep, R0, c0, y0, out, R, c, y, R_ckpt, cy_ckpt, L, H, NC,
            D=D, BD=BD, CK=CHECKPOINT, num_warps=_warps(BD * BD))
        ctx.save_for_backward(z, rk, rv, rbeta, keep, R_ckpt, cy_ckpt)
        return out, R, c, y

    @staticmethod
    def backward(ctx, d_out, dR, dc, dy):
        z, rk, rv, rbeta, keep, R_ckpt, cy_ckpt = ctx.saved_tensors
        B, H, _, L, D = z.shape
        NC = R_ckpt.shape[1]
        R_scratch = z.new_empty(B * H, CHECKPOINT, 3, D, D)
        cy_scratch = z.new_empty(B * H, CHECKPOINT, 2, D)
        dz, drk, drv = (torch.empty_like(z) for _ in range(3))
        drbeta = z.new_empty(B, H, 3, L)
        dR0, dc0, dy0 = z.new_empty(B, H, 3, D, D), z.new_empty(B, H, D), z.new_empty(B, H, D)
        BD = _block(D)
        _kernels["delta_lstm"].delta_lstm_bwd[(B * H,)](
            rk, rv, rbeta, keep, z, R_ckpt, cy_ckpt, R_scratch, cy_scratch, d_out.contiguous(),
            dR.contiguous(), dc.contiguous(), dy.contiguous(), dz, drk, drv, drbeta, dR0, dc0, dy0, L, H, NC,
            D=D, BD=BD, CK=CHECKPOINT, num_warps=_warps(BD * BD))
        return dz, drk.to(rk.dtype), drv.to(rv.dtype), drbeta.to(rbeta.dtype), dR0, dc0, dy0, None


class _RecurrentDeltaNet(torch.autograd.Function):
    """Recurrent Delta Net, softmax key map (Eqs. 15-18); q, k, v (B, H, L, d), beta (B, H, L)."""

    @staticmethod
    def forward(ctx, q, k, v, beta, Rq, Rk, Rv, rbeta, W0, y0, keep):
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        NC = _cdiv(L, CHECKPOINT)
        out = k.new_empty(B, H, L, DV, dtype=torch.float32)
        W, y = torch.empty_like(W0), torch.empty_like(y0)
        W_ckpt = k.new_empty(B * H, NC, DV, DK, dtype=torch.float32)
        y_ckpt = k.new_empty(B * H, NC, DV, dtype=torch.float32)
        BK, BV = _block(DK), _block(DV)
        _kernels["recurrent_delta_net"].rdn_fwd[(B * H,)](
            q, k, v, beta, Rq, Rk, Rv, rbeta, keep, W0, y0, out, W, y, W_ckpt, y_ckpt, L, H, NC,
            DK=DK, DV=DV, BK=BK, BV=BV, CK=CHECKPOINT, num_warps=_warps(BK * BV))
        ctx.save_for_backward(q, k, v, beta, Rq, Rk, Rv, rbeta, keep, y0, out, W_ckpt, y_ckpt)
        return out, W, y

    @staticmethod
    def backward(ctx, d_out, dW, dy):
        q, k, v, beta, Rq, Rk, Rv, rbeta, keep, y0, out, W_ckpt, y_ckpt = ctx.saved_tensors
        B, H, L, DK = k.shape
        DV = v.shape[-1]
        NC = W_ckpt.shape[1]
        W_scratch = k.new_empty(B * H, CHECKPOINT, DV, DK, dtype=torch.float32)
        y_scratch = k.new_empty(B * H, CHECKPOINT, DV, dtype=torch.float32)
        dq, dk = (k.new_empty(B, H, L, DK, dtype=torch.float32) for _ in range(2))
        dv = k.new_empty(B, H, L, DV, dtype=torch.float32)
        dbeta = k.new_empty(B, H, L, dtype=torch.float32)
        dW0 = k.new_empty(B, H, DV, DK, dtype=torch.float32)
        dy0 = k.new_empty(B, H, DV, dtype=torch.float32)
        BK, BV = _block(DK), _block(DV)
        _kernels["recurrent_delta_net"].rdn_bwd[(B * H,)](
            q, k, v, beta, Rq, Rk, Rv, rbeta, keep, W_ckpt, y_ckpt, W_scratch, y_scratch,
            d_out.contiguous(), dW.contiguous(), dy.contiguous(), dq, dk, dv, dbeta, dW0, dy0, L, H, NC,
            DK=DK, DV=DV, BK=BK, BV=BV, CK=CHECKPOINT, num_warps=_warps(BK * BV))
        # The slow recurrent weights act on h_t = tanh(y_{t−1}) (reset rows: y_{t−1} = 0) through the
        # pre-activations whose gradients the kernel returned: their gradients are sums over (b, t).
        y_prev = torch.cat([y0.unsqueeze(2), out[:, :, :-1]], dim=2)
        h = torch.tanh(torch.where(keep[:, None, :, None] != 0, y_prev, 0.0))
        dRq = torch.einsum("bhtk,bhtv->hkv", dq, h)
        dRk = torch.einsum("bhtk,bhtv->hkv", dk, h)
        dRv = torch.einsum("bhti,bhtj->hij", dv, h)
        drbeta = torch.einsum("bht,bhtv->hv", dbeta, h)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbeta.to(beta.dtype), dRq.to(Rq.dtype),
                dRk.to(Rk.dtype), dRv.to(Rv.dtype), drbeta.to(rbeta.dtype), dW0, dy0, None)


def sum_rule(q: Tensor, k: Tensor, v: Tensor, state: Tensor | None = None, reset: Tensor | None = None):
    """Linear Transformer, RFWP Eqs. 6-7, fused recurrent kernel. Returns (out, W)."""
    B, H, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("sum_rule", k, v)
    W0 = _initial(state, (B, H, DV, DK), k, "W")
    out, W = _FusedRecurrent.apply(q.contiguous(), k.contiguous(), v.contiguous(), None, W0, _keep(reset, B, L, k))
    return out.to(q.dtype), W


def fused_recurrent_delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
                               reset: Tensor | None = None):
    """Delta Net, RFWP Eqs. 8-10, fused recurrent kernel (one step at a time). Returns (out, W)."""
    B, H, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("fused_recurrent_delta_rule", k, v)
    W0 = _initial(state, (B, H, DV, DK), k, "W")
    out, W = _FusedRecurrent.apply(q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous(), W0,
                                   _keep(reset, B, L, k))
    return out.to(q.dtype), W


def _chunked_delta_rule(q, k, v, beta, W0, keep):
    """float32 outputs (B, H, L, d_value) and final W; inputs may have any number of heads."""
    return _ChunkedDeltaRule.apply(q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous(), W0, keep)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None):
    """Delta Net, RFWP Eqs. 8-10, chunkwise WY kernel. Returns (out, W)."""
    B, H, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("delta_rule", k, v)
    out, W = _chunked_delta_rule(q, k, v, beta, _initial(state, (B, H, DV, DK), k, "W"), _keep(reset, B, L, k))
    return out.to(q.dtype), W


def delta_rnn(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
              recurrent_beta: Tensor, state: DeltaRNNState | None = None, reset: Tensor | None = None,
              version: str = "B"):
    """Delta RNN version B (RFWP Eq. 12): y_t = W_t q_t + R_t softmax(y_{t−1}). Returns (out, DeltaRNNState)."""
    B, H, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("delta_rnn", k, v, version=version)
    state = state or (None, None, None)
    keep = _keep(reset, B, L, k)
    z, W = _chunked_delta_rule(q, k, v, beta, _initial(state[0], (B, H, DV, DK), k, "W"), keep)
    out, R, y = _DeltaRNNCell.apply(z, recurrent_k.contiguous(), recurrent_v.contiguous(), recurrent_beta.contiguous(),
                                    _initial(state[1], (B, H, DV, DV), k, "R"),
                                    _initial(state[2], (B, H, DV), k, "y"), keep)
    return out.to(q.dtype), DeltaRNNState(W, R, y)


def delta_lstm(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
               recurrent_beta: Tensor, state: DeltaLSTMState | None = None, reset: Tensor | None = None,
               version: str = "D"):
    """Delta LSTM version D (RFWP Eqs. 36-40, Table 1); gates (u, f, o) on axis 2. Returns (out, DeltaLSTMState)."""
    B, H, G, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("delta_lstm", k, v, version=version)
    state = state or (None, None, None, None)
    keep = _keep(reset, B, L, k)
    # The three feed-forward fast weights W_u, W_f, W_o are independent delta rules: run them as 3H heads.
    W0 = _initial(state[0], (B, H, G, DV, DK), k, "W").view(B, H * G, DV, DK)
    z, W = _chunked_delta_rule(q.reshape(B, H * G, L, DK), k.reshape(B, H * G, L, DK),
                               v.reshape(B, H * G, L, DV), beta.reshape(B, H * G, L), W0, keep)
    out, R, c, y = _DeltaLSTMCell.apply(z.view(B, H, G, L, DV), recurrent_k.contiguous(), recurrent_v.contiguous(),
                                        recurrent_beta.contiguous(), _initial(state[1], (B, H, G, DV, DV), k, "R"),
                                        _initial(state[2], (B, H, DV), k, "c"),
                                        _initial(state[3], (B, H, DV), k, "y"), keep)
    return out.to(q.dtype), DeltaLSTMState(W.view(B, H, G, DV, DK), R, c, y)


def recurrent_delta_net(q: Tensor, k: Tensor, v: Tensor, beta_logit: Tensor, R_q: Tensor, R_k: Tensor,
                        R_v: Tensor, R_beta: Tensor, state: RDNState | None = None, reset: Tensor | None = None,
                        key_map: str = "softmax"):
    """Recurrent Delta Net (RFWP Eqs. 15-18) with the softmax key map. Returns (out, RDNState)."""
    B, H, L, DK = k.shape
    DV = v.shape[-1]
    _prepare("recurrent_delta_net", k, v, key_map=key_map)
    state = state or (None, None)
    out, W, y = _RecurrentDeltaNet.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), beta_logit.contiguous(), R_q.contiguous(), R_k.contiguous(),
        R_v.contiguous(), R_beta.contiguous(), _initial(state[0], (B, H, DV, DK), k, "W"),
        _initial(state[1], (B, H, DV), k, "y"), _keep(reset, B, L, k))
    return out.to(q.dtype), RDNState(W, y)
