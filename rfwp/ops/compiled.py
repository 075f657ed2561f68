"""C++ CPU kernels with a hand-written backward (sources in ``kernels/cpu``), built on first use.

Each op is an autograd Function around a forward/backward pair that runs every (batch, head) slice
in parallel and steps through time. The backward never stores per-step fast weights: the forward
keeps the fast weight every C ≈ d_key steps, and the backward replays each block of C steps from its
checkpoint and walks it in reverse, so training memory grows as O(L·d) (``kernels/cpu/delta_memory.h``).

The Delta RNN and Delta LSTM decompose: their feed-forward fast weights give z_t = W_t q_t, a plain
delta rule independent of the output, computed by ``delta_rule`` here; only the recurrent part (R, c, y)
runs in its own sequential kernel. The Recurrent Delta Net is sequential throughout.

The extension is compiled with ``torch.utils.cpp_extension.load`` (-O3 -march=native, OpenMP) and cached
under TORCH_EXTENSIONS_DIR; its name carries a digest of the sources, so an edited kernel is rebuilt.
Without a C++ compiler or on a failed build, one warning is given and ``unsupported`` names the failure,
so ``rfwp.ops`` falls back to the reference loops.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.cpp_extension import load

from ..feature_maps import KEY_MAPS, check_choice
from .reference import DELTA_LSTM_VERSIONS, DELTA_RNN_VERSIONS, DeltaLSTMState, DeltaRNNState, RDNState

# rfwp/ops/compiled.py -> <repository>/kernels/cpu (rfwp is a namespace package: no rfwp.__file__).
SOURCES = Path(__file__).resolve().parents[2] / "kernels" / "cpu"

_extension = None
_failure: str | None = None


def _build():
    sources = sorted(SOURCES.glob("*.cpp"))
    if not sources:
        raise FileNotFoundError(f"no C++ sources in {SOURCES}")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler: {compiler!r} (from $CXX or the default c++) is not on PATH")
    # cpp_extension only rebuilds when a listed .cpp changes; the digest also covers the headers.
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(SOURCES.iterdir()) if p.is_file()))
    return load(name=f"rfwp_cpu_{digest.hexdigest()[:12]}", sources=[str(p) for p in sources],
                extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"])


def extension():
    """The compiled module, built on the first call; None (after one warning) if it cannot be built."""
    global _extension, _failure
    if _extension is None and _failure is None:
        try:
            _extension = _build()
        except Exception as error:  # any failure to compile or import means: use the reference loops
            _failure = f"{type(error).__name__}: {error}"
            warnings.warn(f"rfwp: the compiled C++ kernels are unavailable ({_failure}); "
                          "the reference loop will be used instead", RuntimeWarning, stacklevel=2)
    return _extension


def unsupported(k: Tensor, v: Tensor, *, op: str | None = None, version: str | None = None,
                key_map: str | None = None) -> str | None:
    """Why these kernels cannot take these inputs (they run on CPU float32/float64 tensors, once built; every op,
    version and key map)."""
    if k.device.type != "cpu":
        return f"the compiled kernels run on CPU tensors, got {k.device}"
    if k.dtype not in (torch.float32, torch.float64):
        return f"the compiled kernels take float32 or float64, got {k.dtype}"
    if extension() is None:
        return f"the compiled C++ kernels are unavailable ({_failure})"
    return None


def _ext():
    ext = extension()
    if ext is None:
        raise RuntimeError(f"the compiled C++ kernels are unavailable ({_failure}); "
                           "call rfwp.ops.<op>(..., implementation=None) to use the reference loop")
    return ext


class DeltaRuleFunction(torch.autograd.Function):
    """(q, k, v, beta, W0, reset) -> (out, W_L)."""

    @staticmethod
    def forward(ctx, q, k, v, beta, W0, reset):
        out, W, checkpoints = _ext().delta_rule_forward(q, k, v, beta, W0, reset, any(ctx.needs_input_grad))
        ctx.save_for_backward(q, k, v, beta, reset, checkpoints)
        return out, W

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_W):
        q, k, v, beta, reset, checkpoints = ctx.saved_tensors
        return (*_ext().delta_rule_backward(q, k, v, beta, reset, checkpoints, d_out, d_W), None)


class DeltaRNNRecurrence(torch.autograd.Function):
    """(z, rk, rv, rbeta, R0, y0, reset, version) -> (out, R_L, y_L): the Delta RNN given z_t = W_t q_t."""

    @staticmethod
    def forward(ctx, z, rk, rv, rbeta, R0, y0, reset, version):
        out, R, y, checkpoints, queries = _ext().delta_rnn_forward(z, rk, rv, rbeta, R0, y0, reset, version,
                                                                   any(ctx.needs_input_grad))
        ctx.save_for_backward(rk, rv, rbeta, reset, checkpoints, queries, out)
        ctx.version = version
        return out, R, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_R, d_y):
        rk, rv, rbeta, reset, checkpoints, queries, out = ctx.saved_tensors
        grads = _ext().delta_rnn_backward(rk, rv, rbeta, reset, checkpoints, queries, out, ctx.version,
                                          d_out, d_R, d_y)
        return (*grads, None, None)


class DeltaLSTMRecurrence(torch.autograd.Function):
    """(z, rk, rv, rbeta, R0, c0, y0, reset, version) -> (out, R_L, c_L, y_L): the Delta LSTM given z_g = W_g q_g."""

    @staticmethod
    def forward(ctx, z, rk, rv, rbeta, R0, c0, y0, reset, version):
        out, R, c, y, checkpoints, record = _ext().delta_lstm_forward(z, rk, rv, rbeta, R0, c0, y0, reset, version,
                                                                      any(ctx.needs_input_grad))
        ctx.save_for_backward(rk, rv, rbeta, c0, reset, checkpoints, record, out)
        ctx.version = version
        return out, R, c, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_R, d_c, d_y):
        rk, rv, rbeta, c0, reset, checkpoints, record, out = ctx.saved_tensors
        grads = _ext().delta_lstm_backward(rk, rv, rbeta, c0, reset, checkpoints, record, out, ctx.version,
                                           d_out, d_R, d_c, d_y)
        return (*grads, None, None)


class RecurrentDeltaNetFunction(torch.autograd.Function):
    """(q, k, v, beta, Rq, Rk, Rv, rbeta, W0, y0, reset, key_map) -> (out, W_L, y_L)."""

    @staticmethod
    def forward(ctx, q, k, v, beta, Rq, Rk, Rv, rbeta, W0, y0, reset, key_map):
        out, W, y, checkpoints, *records = _ext().recurrent_delta_net_forward(
            q, k, v, beta, Rq, Rk, Rv, rbeta, W0, y0, reset, key_map, any(ctx.needs_input_grad))
        ctx.save_for_backward(Rq, Rk, Rv, rbeta, y0, reset, out, checkpoints, *records)
        ctx.key_map = key_map
        return out, W, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_W, d_y):
        Rq, Rk, Rv, rbeta, y0, reset, out, checkpoints, *records = ctx.saved_tensors
        grads = _ext().recurrent_delta_net_backward(Rq, Rk, Rv, rbeta, y0, reset, ctx.key_map, out, checkpoints,
                                                    *records, d_out, d_W, d_y)
        return (*grads, None, None)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None):
    """Delta Net, RFWP Eqs. 8-10 (contract of ``reference.delta_rule``)."""
    B, H, L, dk = k.shape
    W0 = k.new_zeros(B, H, v.shape[-1], dk) if state is None else state
    return DeltaRuleFunction.apply(q, k, v, beta, W0, reset)


def delta_rnn(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, rk: Tensor, rv: Tensor, rbeta: Tensor,
              state: DeltaRNNState | None = None, reset: Tensor | None = None, version: str = "B"):
    """Delta RNN, RFWP Eq. 12 (B) or Eq. 19 (A) (contract of ``reference.delta_rnn``)."""
    check_choice("Delta RNN version", version, DELTA_RNN_VERSIONS)
    if state is None:
        state = DeltaRNNState.zeros(k, v)
    z, W = delta_rule(q, k, v, beta, state.W, reset)
    out, R, y = DeltaRNNRecurrence.apply(z, rk, rv, rbeta, state.R, state.y, reset, version)
    return out, DeltaRNNState(W, R, y)


def delta_lstm(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, rk: Tensor, rv: Tensor, rbeta: Tensor,
               state: DeltaLSTMState | None = None, reset: Tensor | None = None, version: str = "D"):
    """Delta LSTM, RFWP Eqs. 20-40 (contract of ``reference.delta_lstm``)."""
    check_choice("Delta LSTM version", version, DELTA_LSTM_VERSIONS)
    H = k.shape[1]
    if state is None:
        state = DeltaLSTMState.zeros(k, v)
    # The three gates' feed-forward fast weights are three independent delta rules: fold them into heads.
    z, W = delta_rule(q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), beta.flatten(1, 2),
                      state.W.flatten(1, 2), reset)
    z, W = z.unflatten(1, (H, 3)), W.unflatten(1, (H, 3))
    out, R, c, y = DeltaLSTMRecurrence.apply(z, rk, rv, rbeta, state.R, state.c, state.y, reset, version)
    return out, DeltaLSTMState(W, R, c, y)


def recurrent_delta_net(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, Rq: Tensor, Rk: Tensor, Rv: Tensor,
                        rbeta: Tensor, state: RDNState | None = None, reset: Tensor | None = None,
                        key_map: str = "softmax"):
    """Recurrent Delta Net, RFWP Eqs. 15-18 (contract of ``reference.recurrent_delta_net``)."""
    check_choice("RDN key_map", key_map, KEY_MAPS)
    if state is None:
        state = RDNState.zeros(k, v)
    out, W, y = RecurrentDeltaNetFunction.apply(q, k, v, beta, Rq, Rk, Rv, rbeta, state.W, state.y, reset, key_map)
    return out, RDNState(W, y)
