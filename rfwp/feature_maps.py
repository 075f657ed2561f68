"""Feature maps φ for linear attention (ICML Sec. 5) and the two normalisations of ICML Sec. 4.2.

A feature map takes (..., d_key) to (..., d_dot). ``FeatureMap`` wraps one with its
normalisation so a layer can choose both by name:

    φ = FeatureMap("dpfp", d_key=16, nu=2, normalisation="sum")   # d_dot = 2·16·2

``normalisation="sum"`` divides φ(x) by the sum of its components (ICML Eq. 29) and is applied
here; ``"attention"`` (ICML Eqs. 26-28) needs the running sum z of the keys and is applied by
the layer (``rfwp.layers``); ``"none"`` leaves φ(x) as it is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURE_MAPS = ("elu", "dpfp", "favor", "softmax", "identity")
NORMALISATIONS = ("sum", "attention", "none")
# φ for keys and queries read by a delta rule inside a recurrence (the RDN's q and k, the Delta RNN/LSTM
# recurrent keys), which must be positive and sum to one (RFWP Sec. 3.1): "softmax" (authors' code) or
# "elu_sum" (ELU+1 then sum normalisation, ICML Eq. 29). ``build_key_map`` builds one by name.
KEY_MAPS = ("softmax", "elu_sum")


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """One clear error for a name (feature map, version, key map) that does not exist."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")


def elu_plus_one(x: Tensor) -> Tensor:
    """Katharopoulos et al.'s φ(x) = ELU(x) + 1 (ICML Eq. 30): x + 1 for x > 0, exp(x) otherwise; d_dot = d_key.
    Written as exp(min(x, 0)) + max(x, 0) rather than ELU(x) + 1, which rounds to exactly 0 in float32 below
    x ≈ −17 (and without torch.where, several times slower here, forward and backward). min(x, 0) is −relu(−x),
    whose gradient at 0 is 0, so that the gradient at x = 0 is 1 (clamp would pass 1 on both sides: 2)."""
    return torch.exp(-F.relu(-x)) + x.clamp(min=0)


def dpfp(x: Tensor, nu: int = 1) -> Tensor:
    """Deterministic parameter-free projection, ICML Eq. 37; d_dot = 2 · d_key · ν.

    With x' = [r(x), r(−x)] (r = ReLU), the features for j = 1..ν are x' ⊙ roll(x', j):
    each is a product of two rectified coordinates, so inputs in different orthants of the
    (x_i, x_{i+j}) planes map to orthogonal vectors (ICML Fig. 1 for d_key = 2, ν = 1).
    """
    check_dpfp_nu(nu, x.shape[-1])
    xp = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    return torch.cat([xp * xp.roll(shifts=j, dims=-1) for j in range(1, nu + 1)], dim=-1)


def check_dpfp_nu(nu: int, d_key: int) -> None:
    """DPFP-ν rolls [r(x), r(−x)] (2·d_key entries) by 1..ν: ν must be at least 1 and below 2·d_key."""
    if not 1 <= nu < 2 * d_key:
        raise ValueError(f"DPFP needs 1 <= nu < 2*d_key = {2 * d_key}, got nu={nu}")


def orthogonal_gaussian(m: int, d: int, generator: torch.Generator | None = None,
                        dtype=torch.float32, device=None) -> Tensor:
    """m × d random features: blocks of orthonormal rows (QR of a Gaussian), each row rescaled
    by the norm of a Gaussian row, so rows are marginally N(0, I) but orthogonal within a block
    (Choromanski et al., 2021, the "orthogonal random features" of FAVOR+)."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator, dtype=torch.float64, device=device)
        qmat, _ = torch.linalg.qr(g)
        blocks.append(qmat.T)
    w = torch.cat(blocks, dim=0)[:m]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64, device=device).norm(dim=-1)
    return (w * norms.unsqueeze(-1)).to(dtype)


def favor_plus(x: Tensor, features: Tensor) -> Tensor:
    """FAVOR+ positive random features, ICML Eqs. 31-32; d_dot = 2m:
    φ(x) = exp(−‖x‖²/2) / √(2m) · [exp(R x), exp(−R x)], computed in log space for stability."""
    m = features.shape[0]
    proj = x @ features.T
    half_norm = 0.5 * (x * x).sum(-1, keepdim=True)
    logits = torch.cat([proj, -proj], dim=-1) - half_norm
    return torch.exp(logits - 0.5 * math.log(2 * m))


def sum_normalise(phi: Tensor, eps: float = 0.0) -> Tensor:
    """ICML Eq. 29: φ'(x) = φ(x) / Σ_j φ(x)_j, so that W φ'(q) is an attention over W's columns."""
    return phi / (phi.sum(-1, keepdim=True) + eps)


class FeatureMap(nn.Module):
    """φ by name, with its normalisation. FAVOR+ redraws its random features at every training
    forward and keeps one draw fixed in eval mode (ICML Sec. 5.3)."""

    def __init__(self, name: str = "elu", d_key: int = 64, nu: int = 1, m: int = 64,
                 normalisation: str = "sum", eps: float = 0.0):
        super().__init__()
        if name not in FEATURE_MAPS:
            raise ValueError(f"unknown feature map {name!r}; choose one of {FEATURE_MAPS}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")
        self.name, self.d_key, self.nu, self.m = name, d_key, nu, m
        self.normalisation, self.eps = normalisation, eps
        if name == "dpfp":
            check_dpfp_nu(nu, d_key)
        if name == "favor":
            self.register_buffer("features", orthogonal_gaussian(m, d_key), persistent=True)

    @property
    def d_dot(self) -> int:
        return {"dpfp": 2 * self.d_key * self.nu, "favor": 2 * self.m}.get(self.name, self.d_key)

    def redraw(self, generator: torch.Generator | None = None) -> None:
        self.features = orthogonal_gaussian(self.m, self.d_key, generator, self.features.dtype,
                                            self.features.device)

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """φ of each input; queries and keys go through one call so FAVOR+ uses one draw for both."""
        if self.name == "favor" and self.training:
            self.redraw()
        out = tuple(self._map(x) for x in xs)
        return out[0] if len(out) == 1 else out

    def _map(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_key:
            raise ValueError(f"feature map {self.name!r} built for d_key={self.d_key} got inputs of "
                             f"size {x.shape[-1]} in the last dimension")
        if self.name == "elu":
            phi = elu_plus_one(x)
        elif self.name == "dpfp":
            phi = dpfp(x, self.nu)
        elif self.name == "favor":
            phi = favor_plus(x, self.features.to(x.dtype))
        elif self.name == "softmax":
            phi = torch.softmax(x, dim=-1)
        else:
            phi = x
        return sum_normalise(phi, self.eps) if self.normalisation == "sum" else phi

    def extra_repr(self) -> str:
        extra = {"dpfp": f", nu={self.nu}", "favor": f", m={self.m}"}.get(self.name, "")
        return f"{self.name}{extra}, d_key={self.d_key}, d_dot={self.d_dot}, normalisation={self.normalisation}"


def build_key_map(name: str, d_key: int) -> FeatureMap:
    """The key map ``name`` (one of KEY_MAPS) for keys and queries of size ``d_key``, as a FeatureMap."""
    check_choice("key map", name, KEY_MAPS)
    if name == "softmax":
        return FeatureMap("softmax", d_key=d_key, normalisation="none")
    return FeatureMap("elu", d_key=d_key, normalisation="sum")
