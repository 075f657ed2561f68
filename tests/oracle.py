"""Shared ground-truth checks: random awkward inputs for every op, and a comparison of a fast
path against ``rfwp.ops.reference`` on outputs, final state and every gradient (inputs and
initial state). Each fast-path test file calls ``assert_matches_reference``."""
from __future__ import annotations

import random

import torch

from rfwp.ops import reference
from rfwp.ops.reference import DeltaLSTMState, DeltaRNNState, RDNState

OPS = ("sum_rule", "delta_rule", "delta_rnn", "delta_lstm", "recurrent_delta_net")


def awkward_shapes(n: int = 50, seed: int = 0, max_d: int = 128, max_len: int = 100):
    """n shapes (B, H, L, d_key, d_value): L = 1, L around chunk multiples, d from 1 to max_d."""
    rng = random.Random(seed)
    lengths = [1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, max_len]
    dims = [1, 2, 3, 5, 8, 16, 17, 32, 33, 64, max_d]
    shapes = [(1, 1, 1, 1, 1), (2, 3, 33, max_d, max_d)]
    while len(shapes) < n:
        d_key = rng.choice(dims)
        shapes.append((rng.randint(1, 3), rng.randint(1, 3), rng.choice(lengths), d_key,
                       rng.choice([d_key, rng.choice(dims)])))
    return shapes


def _key(shape, g, dtype):
    """Positive keys summing to one, as after a sum-normalised feature map (keeps the delta rule stable)."""
    return torch.softmax(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def make_inputs(op: str, B: int, H: int, L: int, d_key: int, d_value: int, *, seed: int = 0,
                dtype=torch.float64, reset_prob: float = 0.2, with_state: bool = True):
    """Keyword arguments for ``op``: leaf tensors requiring grad (initial state included)."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    gates = (3,) if op == "delta_lstm" else ()
    if op == "recurrent_delta_net":
        d_value = d_key  # the fed-back output y has the value size and keys read it
    kw = {}
    if op == "recurrent_delta_net":
        kw.update(q=randn(B, H, L, d_key), k=randn(B, H, L, d_key), v=randn(B, H, L, d_value),
                  beta_logit=randn(B, H, L), R_q=randn(H, d_key, d_value) / d_value ** 0.5,
                  R_k=randn(H, d_key, d_value) / d_value ** 0.5, R_v=randn(H, d_value, d_value) / d_value ** 0.5,
                  R_beta=randn(H, d_value) / d_value ** 0.5)
    else:
        kw.update(q=_key((B, H, *gates, L, d_key), g, dtype), k=_key((B, H, *gates, L, d_key), g, dtype),
                  v=randn(B, H, *gates, L, d_value))
        if op != "sum_rule":
            kw["beta"] = torch.sigmoid(randn(B, H, *gates, L))
        if op in ("delta_rnn", "delta_lstm"):
            kw.update(recurrent_k=_key((B, H, *gates, L, d_value), g, dtype),
                      recurrent_v=randn(B, H, *gates, L, d_value),
                      recurrent_beta=torch.sigmoid(randn(B, H, *gates, L)))
    if with_state:
        W = 0.5 * randn(B, H, *gates, d_value, d_key)
        if op in ("sum_rule", "delta_rule"):
            kw["state"] = W
        elif op == "delta_rnn":
            kw["state"] = DeltaRNNState(W, 0.5 * randn(B, H, d_value, d_value), randn(B, H, d_value))
        elif op == "delta_lstm":
            kw["state"] = DeltaLSTMState(W, 0.5 * randn(B, H, 3, d_value, d_value), randn(B, H, d_value),
                                         randn(B, H, d_value))
        else:
            kw["state"] = RDNState(W, randn(B, H, d_value))
    if reset_prob > 0:
        kw["reset"] = torch.rand(B, L, generator=g) < reset_prob
    for name, value in kw.items():
        for t in (value if isinstance(value, tuple) else (value,)):
            if t.is_floating_point():
                t.requires_grad_(True)
    return kw


def leaves(kwargs) -> dict[str, torch.Tensor]:
    """Every differentiable input by name; state tensors as state.<field>."""
    out = {}
    for name, value in kwargs.items():
        if isinstance(value, tuple):
            out.update({f"{name}.{f}": t for f, t in zip(value._fields, value)})
        elif isinstance(value, torch.Tensor) and value.requires_grad:
            out[name] = value
    return out


def run_with_grads(fn, kwargs, seed: int = 1):
    """Outputs, final state and gradients of a random linear functional of both."""
    out, state = fn(**kwargs)
    results = [out, *state_tensors(state)]
    g = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(r.shape, generator=g, dtype=r.dtype) for r in results]
    named = leaves(kwargs)
    grads = torch.autograd.grad(results, list(named.values()), cotangents, allow_unused=True)
    grads = {n: (torch.zeros_like(t) if gr is None else gr) for (n, t), gr in zip(named.items(), grads)}
    names = ["out", *(f"state.{f}" for f in getattr(state, "_fields", ["W"]))]
    return dict(zip(names, (r.detach() for r in results))), grads


def assert_matches_reference(op: str, fast, kwargs, atol: float = 1e-9, rtol: float = 1e-7):
    """``fast`` equals ``reference.<op>`` on outputs, final state and the gradient of every input."""
    ref_results, ref_grads = run_with_grads(getattr(reference, op), kwargs)
    results, grads = run_with_grads(fast, kwargs)
    for name, r in ref_results.items():
        torch.testing.assert_close(results[name], r, atol=atol, rtol=rtol, msg=lambda m: f"{op} {name}: {m}")
    for name, r in ref_grads.items():
        torch.testing.assert_close(grads[name], r, atol=atol, rtol=rtol, msg=lambda m: f"{op} grad {name}: {m}")



def map_state(fn, state):
    """``fn`` applied to every floating tensor of a state (a tensor, or a tuple, list or NamedTuple of
    states), keeping its structure."""
    if isinstance(state, torch.Tensor):
        return fn(state) if state.is_floating_point() else state
    parts = (map_state(fn, s) for s in state)
    return type(state)(*parts) if hasattr(state, "_fields") else type(state)(parts)


def state_tensors(state) -> list[torch.Tensor]:
    """Every tensor of a state (a tensor, or a tuple, list or NamedTuple of states), in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in state_tensors(s)]


def assert_same_state(state, expected, **tolerance) -> None:
    """Two states of the same structure hold equal tensors."""
    for a, b in zip(state_tensors(state), state_tensors(expected), strict=True):
        torch.testing.assert_close(a, b, **tolerance)


def poisoned(t: torch.Tensor) -> torch.Tensor:
    """A leaf requiring grad shaped like ``t``, filled with inf, −inf and NaN in turn."""
    values = torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=t.dtype)
    return values.repeat(t.numel() // 3 + 1)[:t.numel()].view(t.shape).requires_grad_(True)


def assert_reset_overwrites_state(op: str, fn, shape=(2, 2, 20, 4, 4), extra=None, atol=1e-9, rtol=1e-7,
                                  dtype=torch.float64):
    """A reset at step 0 of every row overwrites the initial state: an inf/NaN state gives finite outputs, final
    state and gradients, equal to those of a zero initial state (a reset by multiplying with 0 gives NaN)."""
    kwargs = {**make_inputs(op, *shape, seed=11, dtype=dtype, reset_prob=0.0), **(extra or {})}
    reset = torch.zeros(shape[0], shape[2], dtype=torch.bool)
    reset[:, 0] = True
    reset[0, shape[2] // 2] = True
    zeros = {**kwargs, "reset": reset,
             "state": map_state(lambda t: torch.zeros_like(t, requires_grad=True), kwargs["state"])}
    expected, expected_grads = run_with_grads(fn, zeros)
    results, grads = run_with_grads(fn, {**zeros, "state": map_state(poisoned, kwargs["state"])})
    for kind, got, want in (("", results, expected), ("grad ", grads, expected_grads)):
        for name, r in got.items():
            assert torch.isfinite(r).all(), f"{op} {kind}{name} is not finite after a reset of an inf/NaN state"
            torch.testing.assert_close(r, want[name], atol=atol, rtol=rtol, msg=lambda m: f"{op} {kind}{name}: {m}")


class Crash(Exception):
    """A run killed in the middle (raised by ``crashing``'s trainers)."""


def crashing(make_trainer, at_step: int):
    """``make_trainer`` whose trainers raise ``Crash`` when asked for step ``at_step``: a run killed there, to be
    resumed from its last checkpoint."""
    def make(config, seed):
        trainer = make_trainer(config, seed)
        step = trainer.train_step

        def train_step(s):
            if s == at_step:
                raise Crash
            return step(s)
        trainer.train_step = train_step
        return trainer
    return make
