"""A run's configuration and the variants of the paper's figures (ICML Sec. 6.1, Figs. 2-5)."""
from __future__ import annotations

from dataclasses import dataclass

SETTINGS = ("capacity", "update")
MEMORIES = ("softmax", "sum", "delta", "fwm")
FEATURE_MAPS = {"softmax": ("none",), "sum": ("elu", "dpfp", "favor"), "delta": ("elu", "dpfp", "favor"),
                "fwm": ("tanh", "dpfp")}

@dataclass(frozen=True)
class RetrievalConfig:
    """One run of the task: the problem (S, setting), the memory and its φ, and the optimiser."""
    S: int                          # number of keys = number of values
    setting: str = "capacity"       # "capacity" (L = S) or "update" (L = 2S)
    memory: str = "sum"             # softmax | sum | delta | fwm
    feature_map: str = "elu"        # φ: elu | dpfp | favor | tanh (fwm) | none (softmax)
    nu: int = 1                     # DPFP-ν
    m: int = 64                     # FAVOR+ random features
    d_key: int = 64
    batch_size: int = 32
    lr: float = 1e-3
    eval_sequences: int = 20        # "we sample 20 sequences and test all possible queries"

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.memory not in MEMORIES:
            raise ValueError(f"memory must be one of {MEMORIES}, got {self.memory!r}")
        if self.feature_map not in FEATURE_MAPS[self.memory]:
            raise ValueError(f"memory {self.memory!r} takes feature_map in {FEATURE_MAPS[self.memory]}, "
                             f"got {self.feature_map!r}")
        if self.S < 2:
            raise ValueError(f"S must be at least 2 keys, got {self.S}")

    @property
    def length(self) -> int:
        return self.S if self.setting == "capacity" else 2 * self.S

    @property
    def d_embedding(self) -> int:
        """Size of the key embedding e; the paper does not state it, the authors used ⌊2.2 S⌋."""
        return int(2 * self.S * 1.1)

    @property
    def d_dot(self) -> int:
        """Dimension of the space the keys are compared in: the memory's capacity (Sec. 4.1)."""
        return {"dpfp": 2 * self.d_key * self.nu, "favor": 2 * self.m}.get(self.feature_map, self.d_key)


@dataclass(frozen=True)
class Variant:
    label: str                      # the name in the paper's figures
    memory: str
    feature_map: str
    nu: int = 1
    m: int = 64


VARIANTS = {
    "softmax": Variant("Softmax", "softmax", "none"),
    "sum_linear": Variant("Linear-Attention", "sum", "elu"),
    "sum_favor64": Variant("FAVOR+ (m=64)", "sum", "favor", m=64),
    "sum_favor128": Variant("FAVOR+ (m=128)", "sum", "favor", m=128),
    "sum_favor512": Variant("FAVOR+ (m=512)", "sum", "favor", m=512),
    "sum_dpfp1": Variant("DPFP-1 (sum rule)", "sum", "dpfp", nu=1),
    "sum_dpfp2": Variant("DPFP-2 (sum rule)", "sum", "dpfp", nu=2),
    "sum_dpfp3": Variant("DPFP-3 (sum rule)", "sum", "dpfp", nu=3),
    "delta_dpfp1": Variant("DPFP-1 (ours)", "delta", "dpfp", nu=1),
    "delta_dpfp2": Variant("DPFP-2 (ours)", "delta", "dpfp", nu=2),
    "delta_linear": Variant("Linear (ours)", "delta", "elu"),
    "schlag2021": Variant("Schlag (2021)", "fwm", "tanh"),
    "schlag2021_dpfp": Variant("Schlag (2021) with DPFP", "fwm", "dpfp", nu=1),
}


def config_for(variant: str, S: int, setting: str) -> RetrievalConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {tuple(VARIANTS)}")
    v = VARIANTS[variant]
    return RetrievalConfig(S=S, setting=setting, memory=v.memory, feature_map=v.feature_map, nu=v.nu, m=v.m)
