"""Device functions shared by the Triton kernels: the index tile of a fast weight block, the reset of a
state, one delta-rule step on a fast weight held in registers and its backward, and a softmax over a padded
vector and its backward.

Shapes: a fast weight W is a (rows, cols) block (value rows, key columns); vectors are 1-D blocks
whose padding beyond the real head dimension holds zeros.
"""
import triton
import triton.language as tl


@triton.jit
def weight_tile(v0, DV: tl.constexpr, DK: tl.constexpr, BV: tl.constexpr, BK: tl.constexpr):
    """The block of value rows v0..v0+BV and key columns 0..BK of a row-major DV × DK fast weight:
    value and key indices, their masks against the real sizes, element offsets and the block's mask."""
    iv = v0 + tl.arange(0, BV)
    ik = tl.arange(0, BK)
    mv = iv < DV
    mk = ik < DK
    return iv, ik, mv, mk, iv[:, None] * DK + ik[None, :], mv[:, None] & mk[None, :]


@triton.jit
def keep_or_zero(x, kp):
    """x, or zeros where kp = 0 (the state is reset before this step). Overwritten rather than multiplied by
    kp, so that an inf or NaN state is forgotten too."""
    return tl.where(kp != 0.0, x, 0.0)


@triton.jit
def delta_step(W, k, v, beta):
    """RFWP Eq. 8: δ = v − W k;  W ← W + β δ ⊗ k. Returns the new W and δ (the backward reuses it)."""
    delta = v - tl.sum(W * k[None, :], 1)
    return W + (beta * delta)[:, None] * k[None, :], delta


@triton.jit
def delta_step_backward(dW, W_prev, k, delta, beta):
    """Backward of ``delta_step(W_prev, k, v, beta)`` given dW, the gradient of the new W.
    Returns the gradients of W_prev, k, v and beta."""
    du = tl.sum(dW * k[None, :], 1)  # gradient of the inserted value u = β δ
    dv = beta * du
    dbeta = tl.sum(du * delta, 0)
    # k enters twice: in u ⊗ k, and in δ = v − W_prev k
    dk = tl.sum(dW * (beta * delta)[:, None], 0) - tl.sum(W_prev * dv[:, None], 0)
    return dW - dv[:, None] * k[None, :], dk, dv, dbeta


@triton.jit
def masked_softmax(x, mask):
    """Softmax over the entries where ``mask`` holds; padding gets probability 0."""
    x = tl.where(mask, x, float("-inf"))
    e = tl.exp(x - tl.max(x, 0))
    return e / tl.sum(e, 0)


@triton.jit
def softmax_backward(p, dp):
    """Gradient of the softmax input given p = softmax(x) and the gradient dp of p."""
    return p * (dp - tl.sum(p * dp, 0))


@triton.jit
def tanh(x):
    # tanh x = 2σ(2x) − 1; triton.language has no tanh of its own outside libdevice
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0
