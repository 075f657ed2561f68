"""The chunkwise sum and delta rules (rfwp.ops.chunked) equal the step-by-step reference: outputs,
final state and the gradients of q, k, v, β and the initial state, across chunk boundaries and resets."""
from __future__ import annotations

import functools

import pytest
import torch

import rfwp.ops
from oracle import (assert_matches_reference, assert_reset_overwrites_state, awkward_shapes, make_inputs,
                    run_with_grads)
from rfwp.ops import chunked, reference

OPS = ("sum_rule", "delta_rule")
SHAPES = awkward_shapes(50)
# Chunk sizes cycled over the shapes: one chunk per step, odd sizes, sizes around and above L.
CHUNK_SIZES = (16, chunked.DEFAULT_CHUNK_SIZE, 5, 64, 1, 128)


def chunked_op(op: str, chunk_size: int):
    return functools.partial(getattr(chunked, op), chunk_size=chunk_size)


@pytest.mark.parametrize("index", range(len(SHAPES)), ids=lambda i: "x".join(map(str, SHAPES[i])))
@pytest.mark.parametrize("op", OPS)
def test_matches_reference_float64(op, index):
    B, H, L, d_key, d_value = SHAPES[index]
    chunk_size = CHUNK_SIZES[index % len(CHUNK_SIZES)]
    for with_state in (True, False):
        for reset_prob in (0.0, 0.2):
            kwargs = make_inputs(op, B, H, L, d_key, d_value, seed=index, with_state=with_state,
                                 reset_prob=reset_prob)
            assert_matches_reference(op, chunked_op(op, chunk_size), kwargs, atol=1e-9, rtol=1e-7)


def reset_at(B: int, L: int, *steps: int) -> torch.Tensor:
    reset = torch.zeros(B, L, dtype=torch.bool)
    reset[:, list(steps)] = True
    return reset


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("pattern", ["first step", "chunk starts", "chunk ends", "every step", "one row only"])
def test_reset_placement(op, pattern):
    """Resets on the chunk boundaries, at the first and last step, everywhere, and in one batch row only."""
    B, H, L, d, C = 2, 2, 40, 6, 8
    kwargs = make_inputs(op, B, H, L, d, d + 1, seed=7, reset_prob=0.0)
    kwargs["reset"] = {
        "first step": reset_at(B, L, 0),
        "chunk starts": reset_at(B, L, 8, 16, 32),
        "chunk ends": reset_at(B, L, 7, 15, 39),
        "every step": torch.ones(B, L, dtype=torch.bool),
        "one row only": torch.cat([reset_at(1, L, 3, 8, 21), reset_at(1, L)]),
    }[pattern]
    assert_matches_reference(op, chunked_op(op, C), kwargs, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(2, 2, 100, 32, 32), (1, 3, 65, 64, 16)])
def test_float32_close_to_float64_reference(op, shape):
    """In fp32 the chunked op stays within 1e-5 of the exact (fp64) reference, gradients included."""
    kwargs = make_inputs(op, *shape, seed=3, dtype=torch.float32)

    def exact(**kw):
        out, state = getattr(reference, op)(**{n: t.double() if t.is_floating_point() else t for n, t in kw.items()})
        return out.float(), state.float()

    expected, expected_grads = run_with_grads(exact, kwargs)
    results, grads = run_with_grads(getattr(chunked, op), kwargs)
    for name, r in expected.items():
        torch.testing.assert_close(results[name], r, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    for name, r in expected_grads.items():
        torch.testing.assert_close(grads[name], r, atol=1e-5, rtol=1e-5, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("op", OPS)
def test_dispatch_reaches_chunked(op, monkeypatch):
    """``rfwp.ops.<op>(..., implementation="chunked")`` runs this module's function, once, and equals the
    reference (outputs, final state, gradients)."""
    calls = []
    original = getattr(chunked, op)
    monkeypatch.setattr(chunked, op, lambda *args: calls.append(args) or original(*args))
    public = getattr(rfwp.ops, op)
    assert_matches_reference(op, lambda **kw: public(**kw, implementation="chunked"), make_inputs(op, 2, 2, 20, 4, 4))
    assert len(calls) == 1


@pytest.mark.parametrize("chunk_size", [0, -4, 2.0, True])
def test_bad_chunk_size_is_rejected(chunk_size):
    kwargs = make_inputs("delta_rule", 1, 1, 5, 3, 3)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        chunked.delta_rule(**kwargs, chunk_size=chunk_size)


@pytest.mark.parametrize("op", OPS)
def test_reset_overwrites_an_inf_or_nan_state(op):
    """Chunks of 8 over 20 steps: resets at step 0 and, in one row, inside the second chunk."""
    assert_reset_overwrites_state(op, chunked_op(op, 8))
