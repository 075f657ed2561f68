"""Fast weight update rules, one dispatching entry point per rule.

Every op has the contract documented in ``rfwp.ops.reference`` (the step-by-step ground truth):
inputs in (batch, heads, length, dim), ``state`` in and out, optional ``reset`` (batch, length).
``implementation`` selects a path by name; None picks the fastest one that supports the inputs:

  reference  plain loop over time, autograd (``reference.py``)
  chunked    chunkwise-parallel sum and delta rules in PyTorch (``chunked.py``)
  compiled   C++ CPU kernels with hand-written backward (``compiled.py``, sources in ``rfwp/kernels/cpu``)
  triton     Triton GPU kernels (``triton.py``, sources in ``rfwp/kernels/triton``)
"""
from __future__ import annotations

import importlib

import torch
from torch import Tensor

from .reference import DeltaLSTMState, DeltaRNNState, RDNState

IMPLEMENTATIONS = ("reference", "chunked", "compiled", "triton")

# Which implementations exist for each op, in order of preference on CPU.
_CPU_PREFERENCE = {
    "sum_rule": ("chunked", "reference"),
    "delta_rule": ("compiled", "chunked", "reference"),
    "delta_rnn": ("compiled", "reference"),
    "delta_lstm": ("compiled", "reference"),
    "recurrent_delta_net": ("compiled", "reference"),
}
_CUDA_PREFERENCE = {op: ("triton", "reference") for op in _CPU_PREFERENCE}


def _module(implementation: str):
    return importlib.import_module(f"{__name__}.{implementation}")


def unsupported(implementation: str, op: str, k: Tensor, v: Tensor, **variant) -> str | None:
    """Why ``implementation`` cannot run ``op`` on these keys and values, or None if it can. ``variant`` holds
    the op's other arguments that an implementation may not cover (``version``, ``key_map``). An implementation
    module may define ``unsupported(k, v, *, op, version=None, key_map=None)`` for its limits (device, dtype,
    head size, variants, a failed build)."""
    module = _module(implementation)
    if not hasattr(module, op):
        have = [name for name in IMPLEMENTATIONS if hasattr(_module(name), op)]
        return f"{op} has no {implementation!r} implementation; it has {have}"
    check = getattr(module, "unsupported", None)
    return None if check is None else check(k, v, op=op, **variant)


def resolve(op: str, k: Tensor, v: Tensor, implementation: str | None = None, **variant):
    """The function implementing ``op`` (with ``variant``: its ``version`` or ``key_map``) for these keys and
    values: the named one, or the first of the device's preference that supports them."""
    if implementation is not None:
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {implementation!r}; choose one of {IMPLEMENTATIONS}")
        reason = unsupported(implementation, op, k, v, **variant)
        if reason is not None:
            raise ValueError(f"{reason}; pass implementation=None to choose one that can")
        return getattr(_module(implementation), op)
    preference = _CUDA_PREFERENCE if k.is_cuda else _CPU_PREFERENCE
    for name in preference[op]:
        if unsupported(name, op, k, v, **variant) is None:
            return getattr(_module(name), op)
    raise AssertionError("the reference implementation is always available")


def _expect(name: str, t: Tensor, shape: tuple, hint: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)} but must be {tuple(shape)}: {hint}")


def check_reset(reset: Tensor | None, batch: int, length: int) -> None:
    """``reset`` is None or a bool (batch, length) tensor: True where the state is zeroed before that step."""
    if reset is None:
        return
    if tuple(reset.shape) != (batch, length):
        raise ValueError(f"reset has shape {tuple(reset.shape)} but must be (batch, length) = {(batch, length)}: "
                         f"one flag per sequence and step, True where the state is zeroed before that step")
    if reset.dtype != torch.bool:
        raise ValueError(f"reset must be a bool tensor, got {reset.dtype}; convert it with reset.bool()")


def _check(q: Tensor, k: Tensor, v: Tensor, beta: Tensor | None, reset: Tensor | None, gates: int = 0,
           names: tuple[str, str, str, str] = ("q", "k", "v", "beta")):
    """Shape checks shared by all ops; ``gates`` > 0 for inputs with a gate axis at 2 (Delta LSTM); ``names``
    are the arguments' names in the messages."""
    q_name, k_name, v_name, beta_name = names
    lead = 3 + (gates > 0)
    if k.dim() != lead + 1:
        layout = "(batch, heads, gates, length, dim)" if gates else "(batch, heads, length, dim)"
        raise ValueError(f"{k_name} has {k.dim()} dimensions but must be {layout}; "
                         f"permute (batch, length, heads, dim) inputs with .transpose(1, 2)")
    if gates and k.shape[2] != gates:
        raise ValueError(f"{k_name} has {k.shape[2]} gates on axis 2 but must have {gates} "
                         f"(u, f, o: RFWP Eqs. 36-40)")
    *prefix, L, dk = k.shape
    _expect(q_name, q, (*prefix, L, dk), "queries and keys share every dimension")
    if tuple(v.shape[:-1]) != (*prefix, L):
        raise ValueError(f"{v_name} has shape {tuple(v.shape)} but must be {(*prefix, L, 'd_value')}: "
                         f"values share batch, heads and length with the keys")
    if beta is not None:
        _expect(beta_name, beta, (*prefix, L), "one learning rate per head and step (squeeze the last axis)")
    check_reset(reset, prefix[0], L)


_RECURRENT_NAMES = ("recurrent_k", "recurrent_k", "recurrent_v", "recurrent_beta")


def _check_state(state, kind, **shapes: tuple) -> None:
    """The carried state must be what a previous call returned (or None): right type, right shapes."""
    if state is None:
        return
    if kind is Tensor:
        if not isinstance(state, Tensor):
            raise ValueError(f"state must be the fast weight tensor W returned by a previous call, or None; "
                             f"got {type(state).__name__}")
        tensors = {"W": state}
    else:
        if not isinstance(state, kind):
            raise ValueError(f"state must be a {kind.__name__} (as returned by a previous call), or None; "
                             f"got {type(state).__name__}")
        tensors = state._asdict()
    for name, shape in shapes.items():
        _expect(f"state.{name}", tensors[name], shape, "pass the state returned by a previous call on "
                "inputs of the same batch size and dimensions, or None to start from zeros")


def sum_rule(q: Tensor, k: Tensor, v: Tensor, state: Tensor | None = None, reset: Tensor | None = None,
             *, implementation: str | None = None):
    """Sum update rule (Linear Transformer), RFWP Eqs. 6-7. Returns (out, W)."""
    _check(q, k, v, None, reset)
    B, H, _, dk = k.shape
    _check_state(state, Tensor, W=(B, H, v.shape[-1], dk))
    return resolve("sum_rule", k, v, implementation)(q, k, v, state, reset)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None, *, implementation: str | None = None):
    """Delta update rule (Delta Net), RFWP Eqs. 8-10. Returns (out, W)."""
    _check(q, k, v, beta, reset)
    B, H, _, dk = k.shape
    _check_state(state, Tensor, W=(B, H, v.shape[-1], dk))
    return resolve("delta_rule", k, v, implementation)(q, k, v, beta, state, reset)


def delta_rnn(q, k, v, beta, recurrent_k, recurrent_v, recurrent_beta, state: DeltaRNNState | None = None,
              reset=None, version="B", *, implementation: str | None = None):
    """Delta RNN, RFWP Eq. 12 (version B) or Eq. 19 (version A). Returns (out, DeltaRNNState)."""
    _check(q, k, v, beta, reset)
    _check(recurrent_k, recurrent_k, recurrent_v, recurrent_beta, None, names=_RECURRENT_NAMES)
    B, H, _, dk = k.shape
    dv = v.shape[-1]
    _check_state(state, DeltaRNNState, W=(B, H, dv, dk), R=(B, H, dv, dv), y=(B, H, dv))
    return resolve("delta_rnn", k, v, implementation, version=version)(
        q, k, v, beta, recurrent_k, recurrent_v, recurrent_beta, state, reset, version)


def delta_lstm(q, k, v, beta, recurrent_k, recurrent_v, recurrent_beta, state: DeltaLSTMState | None = None,
               reset=None, version="D", *, implementation: str | None = None):
    """Delta LSTM, RFWP Eqs. 20-40 (versions A-D). Returns (out, DeltaLSTMState)."""
    _check(q, k, v, beta, reset, gates=3)
    _check(recurrent_k, recurrent_k, recurrent_v, recurrent_beta, None, gates=3, names=_RECURRENT_NAMES)
    B, H, _, _, dk = k.shape
    dv = v.shape[-1]
    _check_state(state, DeltaLSTMState, W=(B, H, 3, dv, dk), R=(B, H, 3, dv, dv), c=(B, H, dv), y=(B, H, dv))
    return resolve("delta_lstm", k, v, implementation, version=version)(
        q, k, v, beta, recurrent_k, recurrent_v, recurrent_beta, state, reset, version)


def recurrent_delta_net(q, k, v, beta_logit, R_q, R_k, R_v, R_beta, state: RDNState | None = None, reset=None,
                        key_map="softmax", *, implementation: str | None = None):
    """Recurrent Delta Net, RFWP Eqs. 15-18; ``beta_logit`` is W_β x, before σ. Returns (out, RDNState)."""
    _check(q, k, v, beta_logit, reset, names=("q", "k", "v", "beta_logit"))
    B, H, _, dk = k.shape
    dv = v.shape[-1]
    _expect("R_q", R_q, (H, dk, dv), "R_q maps tanh(y_{t-1}) to the query, one matrix per head (Eq. 17)")
    _expect("R_k", R_k, (H, dk, dv), "R_k maps tanh(y_{t-1}) to the key, one matrix per head (Eq. 15)")
    _expect("R_v", R_v, (H, dv, dv), "R_v maps tanh(y_{t-1}) to the value, one matrix per head (Eq. 16)")
    _expect("R_beta", R_beta, (H, dv), "R_β maps tanh(y_{t-1}) to β, one row per head (Eq. 18)")
    _check_state(state, RDNState, W=(B, H, dv, dk), y=(B, H, dv))
    return resolve("recurrent_delta_net", k, v, implementation, key_map=key_map)(
        q, k, v, beta_logit, R_q, R_k, R_v, R_beta, state, reset, key_map)


__all__ = ["sum_rule", "delta_rule", "delta_rnn", "delta_lstm", "recurrent_delta_net", "resolve",
           "unsupported", "check_reset", "IMPLEMENTATIONS", "DeltaRNNState", "DeltaLSTMState", "RDNState"]
