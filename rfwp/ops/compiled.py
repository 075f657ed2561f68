"""C++ CPU kernels with a hand-written backward (sources in ``rfwp/kernels/cpu``), built once per machine.

Each op is an autograd Function around a forward/backward pair that runs every (batch, head) slice
in parallel and steps through time. The backward never stores per-step fast weights: the forward
keeps the fast weight every C ≈ d_key steps, and the backward replays each block of C steps from its
checkpoint and walks it in reverse, so training memory grows as O(L·d) (``rfwp/kernels/cpu/delta_memory.h``).

The Delta RNN and Delta LSTM decompose: their feed-forward fast weights give z_t = W_t q_t, a plain
delta rule independent of the output, computed by ``delta_rule`` here; only the recurrent part (R, c, y)
runs in its own sequential kernel. The Recurrent Delta Net is sequential throughout.

The extension is compiled with ``torch.utils.cpp_extension.load`` (-O3 -march=native, OpenMP) into
``cache_root()/rfwp_cpu_<key>``: ``<checkout>/.cache/rfwp/extensions`` when rfwp runs from a source checkout
(editable install included), else the per-user ``~/.cache/rfwp/extensions`` ($XDG_CACHE_HOME), or
$RFWP_EXTENSIONS_DIR if set. The key digests the sources, the torch version, the Python ABI, the flags and
the machine (host, architecture, CPU model: -march=native code is CPU-specific), so an edited kernel or a
new torch is rebuilt and two checkouts never rebuild each other's. ``make venv`` builds it once
(``python -c "import rfwp.ops.compiled as c; c.main()"``); otherwise the first use builds it (about 30 s).
Without a C++ compiler or on a failed build, one warning is given and ``unsupported`` names the failure,
so ``rfwp.ops`` falls back to the reference loops.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.cpp_extension import load

from ..feature_maps import KEY_MAPS, check_choice
from .reference import DELTA_LSTM_VERSIONS, DELTA_RNN_VERSIONS, DeltaLSTMState, DeltaRNNState, RDNState

# rfwp/ops/compiled.py -> rfwp/kernels/cpu, installed with the package (package data).
PACKAGE = Path(__file__).resolve().parents[1]
SOURCES = PACKAGE / "kernels" / "cpu"
CFLAGS = ["-O3", "-march=native", "-fopenmp"]
LDFLAGS = ["-fopenmp"]

_extension = None
_failure: str | None = None


def cache_root() -> Path:
    """Where the extension is built: $RFWP_EXTENSIONS_DIR; ``<checkout>/.cache/rfwp/extensions`` when the
    package is a writable source checkout's ``rfwp/`` (a ``pyproject.toml`` beside it); else the per-user cache."""
    if os.environ.get("RFWP_EXTENSIONS_DIR"):
        return Path(os.environ["RFWP_EXTENSIONS_DIR"])
    if (PACKAGE.parent / "pyproject.toml").is_file() and os.access(PACKAGE.parent, os.W_OK):
        return PACKAGE.parent / ".cache" / "rfwp" / "extensions"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rfwp" / "extensions"


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


def _machine() -> str:
    """Host, architecture and CPU model: code built with -march=native may not run on another CPU."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{platform.node()} {platform.machine()} {model}"


def build_name() -> str:
    """``rfwp_cpu_<key>``: the module's name and its build folder's; the key digests the sources (headers
    included), torch's version, the Python ABI, compiler and flags, and the machine."""
    digest = hashlib.sha256()
    for path in sorted(SOURCES.iterdir()) if SOURCES.is_dir() else []:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update("\0".join([torch.__version__, sysconfig.get_config_var("EXT_SUFFIX") or sys.version,
                             _compiler(), *CFLAGS, *LDFLAGS, _machine()]).encode())
    return f"rfwp_cpu_{digest.hexdigest()[:16]}"


def build_directory() -> Path:
    return cache_root() / build_name()


def _build(verbose: bool = False):
    sources = sorted(SOURCES.glob("*.cpp"))
    if not sources:
        raise FileNotFoundError(f"no C++ sources in {SOURCES}")
    name, directory = build_name(), build_directory()
    # A finished build loads without a compiler (ninja finds it up to date); a new one needs one.
    if not (directory / f"{name}.so").exists() and shutil.which(_compiler()) is None:
        raise RuntimeError(f"no C++ compiler: {_compiler()!r} (from $CXX or the default c++) is not on PATH")
    # Our own build folder, not torch's per-user default (keyed by name only, shared by every checkout).
    directory.mkdir(parents=True, exist_ok=True)
    return load(name=name, sources=[str(p) for p in sources], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
                build_directory=str(directory), verbose=verbose)


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


def main() -> int:
    """Build the extension now (``make venv`` runs this), or find it built; 1 if a compiler is there but the
    build fails, 0 with a warning if there is no compiler at all (the reference loops are used then)."""
    global _extension, _failure
    directory = build_directory()
    built = (directory / f"{build_name()}.so").exists()
    if not built and shutil.which(_compiler()) is None:
        print(f"rfwp: no C++ compiler ({_compiler()!r}): the compiled kernels are not built; "
              "the reference loops will be used", file=sys.stderr)
        return 0
    if not built:
        print(f"rfwp: building the C++ kernels into {directory} (about 30 s)", flush=True)
    try:
        _extension = _build()
    except Exception as error:
        _failure = f"{type(error).__name__}: {error}"
        print(f"rfwp: building the C++ kernels failed: {_failure}", file=sys.stderr)
        return 1
    print(f"rfwp: compiled C++ kernels ready: {directory}")
    return 0


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
    """(z, recurrent_k, recurrent_v, recurrent_beta, R0, y0, reset, version) -> (out, R_L, y_L): the Delta RNN
    given z_t = W_t q_t."""

    @staticmethod
    def forward(ctx, z, recurrent_k, recurrent_v, recurrent_beta, R0, y0, reset, version):
        recurrent = (recurrent_k, recurrent_v, recurrent_beta)
        out, R, y, checkpoints, queries = _ext().delta_rnn_forward(z, *recurrent, R0, y0, reset, version,
                                                                   any(ctx.needs_input_grad))
        ctx.save_for_backward(*recurrent, reset, checkpoints, queries, out)
        ctx.version = version
        return out, R, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_R, d_y):
        *recurrent, reset, checkpoints, queries, out = ctx.saved_tensors
        grads = _ext().delta_rnn_backward(*recurrent, reset, checkpoints, queries, out, ctx.version, d_out, d_R, d_y)
        return (*grads, None, None)


class DeltaLSTMRecurrence(torch.autograd.Function):
    """(z, recurrent_k, recurrent_v, recurrent_beta, R0, c0, y0, reset, version) -> (out, R_L, c_L, y_L): the
    Delta LSTM given z_g = W_g q_g."""

    @staticmethod
    def forward(ctx, z, recurrent_k, recurrent_v, recurrent_beta, R0, c0, y0, reset, version):
        recurrent = (recurrent_k, recurrent_v, recurrent_beta)
        out, R, c, y, checkpoints, record = _ext().delta_lstm_forward(z, *recurrent, R0, c0, y0, reset, version,
                                                                      any(ctx.needs_input_grad))
        ctx.save_for_backward(*recurrent, c0, reset, checkpoints, record, out)
        ctx.version = version
        return out, R, c, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_R, d_c, d_y):
        *recurrent, c0, reset, checkpoints, record, out = ctx.saved_tensors
        grads = _ext().delta_lstm_backward(*recurrent, c0, reset, checkpoints, record, out, ctx.version,
                                           d_out, d_R, d_c, d_y)
        return (*grads, None, None)


class RecurrentDeltaNetFunction(torch.autograd.Function):
    """(q, k, v, beta_logit, R_q, R_k, R_v, R_beta, W0, y0, reset, key_map) -> (out, W_L, y_L)."""

    @staticmethod
    def forward(ctx, q, k, v, beta_logit, R_q, R_k, R_v, R_beta, W0, y0, reset, key_map):
        out, W, y, checkpoints, *records = _ext().recurrent_delta_net_forward(
            q, k, v, beta_logit, R_q, R_k, R_v, R_beta, W0, y0, reset, key_map, any(ctx.needs_input_grad))
        ctx.save_for_backward(R_q, R_k, R_v, R_beta, y0, reset, out, checkpoints, *records)
        ctx.key_map = key_map
        return out, W, y

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_W, d_y):
        R_q, R_k, R_v, R_beta, y0, reset, out, checkpoints, *records = ctx.saved_tensors
        grads = _ext().recurrent_delta_net_backward(R_q, R_k, R_v, R_beta, y0, reset, ctx.key_map, out, checkpoints,
                                                    *records, d_out, d_W, d_y)
        return (*grads, None, None)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None):
    """Delta Net, RFWP Eqs. 8-10 (contract of ``reference.delta_rule``)."""
    B, H, L, dk = k.shape
    W0 = k.new_zeros(B, H, v.shape[-1], dk) if state is None else state
    return DeltaRuleFunction.apply(q, k, v, beta, W0, reset)


def delta_rnn(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
              recurrent_beta: Tensor, state: DeltaRNNState | None = None, reset: Tensor | None = None,
              version: str = "B"):
    """Delta RNN, RFWP Eq. 12 (B) or Eq. 19 (A) (contract of ``reference.delta_rnn``)."""
    check_choice("Delta RNN version", version, DELTA_RNN_VERSIONS)
    if state is None:
        state = DeltaRNNState.zeros(k, v)
    z, W = delta_rule(q, k, v, beta, state.W, reset)
    out, R, y = DeltaRNNRecurrence.apply(z, recurrent_k, recurrent_v, recurrent_beta, state.R, state.y, reset,
                                         version)
    return out, DeltaRNNState(W, R, y)


def delta_lstm(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
               recurrent_beta: Tensor, state: DeltaLSTMState | None = None, reset: Tensor | None = None,
               version: str = "D"):
    """Delta LSTM, RFWP Eqs. 20-40 (contract of ``reference.delta_lstm``)."""
    check_choice("Delta LSTM version", version, DELTA_LSTM_VERSIONS)
    H = k.shape[1]
    if state is None:
        state = DeltaLSTMState.zeros(k, v)
    # The three gates' feed-forward fast weights are three independent delta rules: fold them into heads.
    z, W = delta_rule(q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), beta.flatten(1, 2),
                      state.W.flatten(1, 2), reset)
    z, W = z.unflatten(1, (H, 3)), W.unflatten(1, (H, 3))
    out, R, c, y = DeltaLSTMRecurrence.apply(z, recurrent_k, recurrent_v, recurrent_beta, state.R, state.c, state.y,
                                             reset, version)
    return out, DeltaLSTMState(W, R, c, y)


def recurrent_delta_net(q: Tensor, k: Tensor, v: Tensor, beta_logit: Tensor, R_q: Tensor, R_k: Tensor,
                        R_v: Tensor, R_beta: Tensor, state: RDNState | None = None, reset: Tensor | None = None,
                        key_map: str = "softmax"):
    """Recurrent Delta Net, RFWP Eqs. 15-18 (contract of ``reference.recurrent_delta_net``)."""
    check_choice("RDN key_map", key_map, KEY_MAPS)
    if state is None:
        state = RDNState.zeros(k, v)
    out, W, y = RecurrentDeltaNetFunction.apply(q, k, v, beta_logit, R_q, R_k, R_v, R_beta, state.W, state.y, reset,
                                                key_map)
    return out, RDNState(W, y)
