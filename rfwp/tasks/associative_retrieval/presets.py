"""What the background notebook runs at each scale: for each figure, the variants, their S and the step limit."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class RetrievalScale:
    """What the background notebook runs at one scale: for each figure, the variants, their S and seeds."""
    capacity: dict[str, tuple[int, ...]]    # ICML Figs. 2 and 4: variant → S (setting 1, L = S), with seed 0
    capacity_repeats: dict[str, tuple[int, ...]]  # variant → the S that also run with seeds 1 and 2
    largest: int                            # ICML Fig. 4: the training curves at this S (the paper's 600)
    curves: tuple[str, ...]                 # ICML Fig. 3: variants at S = curve_size (setting 2)
    curve_size: int
    curve_seeds: tuple[int, ...]
    update: dict[str, tuple[int, ...]]      # ICML Fig. 5: variant → S (setting 2, L = 2S)
    update_seeds: tuple[int, ...]
    max_steps: int
    # Why softmax attention fails at large S at this scale: the same run at other learning rates, longer.
    softmax_size: int
    softmax_learning_rates: tuple[float, ...]
    softmax_steps: int


FIG2_VARIANTS = ("softmax", "sum_linear", "sum_favor64", "sum_favor128", "sum_favor512",
                 "sum_dpfp1", "sum_dpfp2", "sum_dpfp3")
FIG3_VARIANTS = ("sum_dpfp1", "delta_dpfp1", "schlag2021", "schlag2021_dpfp")
# Fig. 5's models are not listed in the paper's text; these are the labels of the authors'
# figure notebook (DPFP-1 sum, DPFP-1/2 and Linear with the update rule, both Schlag (2021)).
FIG5_VARIANTS = ("sum_dpfp1", "delta_dpfp1", "delta_dpfp2", "delta_linear", "schlag2021", "schlag2021_dpfp")

PAPER = RetrievalScale(capacity={v: tuple(range(20, 601, 20)) for v in FIG2_VARIANTS},
                       capacity_repeats={}, largest=600,
                       curves=FIG3_VARIANTS, curve_size=20, curve_seeds=(1,),
                       update={v: tuple(range(20, 201, 20)) for v in FIG5_VARIANTS}, update_seeds=(1,),
                       max_steps=100_000, softmax_size=600, softmax_learning_rates=(), softmax_steps=100_000)
# Chosen by measured step times (one thread: from about 10 ms a step at S = 20 to 0.1-1 s at S = 300-600 for
# DPFP-3 and FAVOR+, and 2-5 s for Schlag (2021)'s step loop at S = 100-200) to fit about 2 hours on 2 cores.
# Setting 1: 8 sizes per φ on both sides of its capacity d_dot (64 Linear, 128ν DPFP-ν, 2m FAVOR+), up to
# S = 600 for softmax, where a step is cheap, and up to where the budget allows for the others. Seeds 1 and 2
# repeat the sizes that decide C1 (every size up to the first one above d_dot, DPFP-3's 400 included) and
# softmax up to 240; the largest sizes, far above capacity and the costliest, and FAVOR+ (its random-feature
# steps cost most; no size of it reaches zero loss in the paper) run once.
# Setting 2: 3 seeds at S = 20 (Fig. 3), one seed per S for Fig. 5, up to S = 200 for the sum rule and the delta rule with DPFP-1 and Linear keys,
# 80 for DPFP-2 and 40
# for Schlag (2021). At most 2000 steps a run (the paper: 100k).
CPU = RetrievalScale(capacity={"softmax": (20, 40, 80, 160, 240, 320, 480, 600),
                               "sum_linear": (20, 40, 60, 80, 120, 160, 240, 320),     # d_dot = 64
                               "sum_dpfp1": (20, 40, 80, 120, 160, 200, 240, 320),     # d_dot = 128
                               "sum_dpfp2": (40, 80, 120, 160, 200, 240, 280, 320),    # d_dot = 256
                               "sum_dpfp3": (40, 80, 120, 160, 240, 280, 320, 400),    # d_dot = 384
                               "sum_favor64": (20, 40, 60, 80, 100, 120, 140, 160),    # d_dot = 128
                               "sum_favor128": (20, 40, 60, 80, 100, 120, 160, 200),   # d_dot = 256
                               "sum_favor512": (20, 30, 40, 50, 60, 70, 80, 100)},     # d_dot = 1024
                     capacity_repeats={"softmax": (20, 40, 80, 160, 240), "sum_linear": (20, 40, 60, 80, 120, 160),
                                       "sum_dpfp1": (20, 40, 80, 120, 160, 200),
                                       "sum_dpfp2": (40, 80, 120, 160, 200, 240, 280),
                                       "sum_dpfp3": (40, 80, 120, 160, 240, 280, 400)},
                     largest=320, curves=FIG3_VARIANTS, curve_size=20, curve_seeds=(0, 1, 2),
                     update={"sum_dpfp1": (20, 40, 80, 120, 160, 200), "delta_dpfp1": (20, 40, 80, 120, 160, 200),
                             "delta_linear": (20, 40, 80, 120, 160, 200), "delta_dpfp2": (20, 40, 80),
                             "schlag2021": (20, 40), "schlag2021_dpfp": (20, 40)},
                     update_seeds=(0,), max_steps=2000,
                     softmax_size=320, softmax_learning_rates=(1e-3, 3e-4), softmax_steps=6000)
SMOKE = RetrievalScale(capacity={"softmax": (8,), "sum_linear": (8, 80), "sum_dpfp1": (8, 80)},
                       capacity_repeats={"sum_dpfp1": (8,)}, largest=80,
                       curves=FIG3_VARIANTS, curve_size=6, curve_seeds=(0,),
                       update={"sum_dpfp1": (6,), "delta_dpfp1": (6,)}, update_seeds=(0,), max_steps=200,
                       softmax_size=8, softmax_learning_rates=(1e-3,), softmax_steps=200)
SCALES = {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}


def preset(scale: str) -> RetrievalScale:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return SCALES[scale]
