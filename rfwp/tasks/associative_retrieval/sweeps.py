"""The runs behind each figure, as tidy DataFrames (one row per run, or per evaluation for the curves).
``workers`` trains missing runs in that many single-threaded processes (``rfwp.analysis.sweep``)."""
from __future__ import annotations

import pandas as pd

from rfwp import analysis
from rfwp.tasks.associative_retrieval.config import VARIANTS, config_for
from rfwp.tasks.associative_retrieval.presets import preset
from rfwp.tasks.associative_retrieval.trainer import run


def _points(setting: str, sizes: dict[str, tuple[int, ...]], scale: str) -> list[dict]:
    return [{"variant": variant, "S": S, "setting": setting, "scale": scale}
            for variant, variant_sizes in sizes.items() for S in variant_sizes]


def _frame(points: list[dict], seeds, workers: int, desc: str) -> pd.DataFrame:
    return _describe(analysis.sweep(run, points, seeds, workers=workers, desc=desc))


def _describe(df: pd.DataFrame) -> pd.DataFrame:
    """Adds each run's label in the paper's figures, its sequence length L and its memory's capacity d_dot."""
    configs = [config_for(v, S, setting) for v, S, setting in zip(df.variant, df.S, df.setting)]
    return df.assign(label=[VARIANTS[v].label for v in df.variant], L=[c.length for c in configs],
                     d_dot=[c.d_dot for c in configs])


def capacity_sweep(scale: str, seeds=None, workers: int = 1) -> pd.DataFrame:
    """ICML Fig. 2: the best evaluation loss of each φ with the sum rule (and softmax) against S, setting 1.
    One row per run. ``seeds`` None: the preset's, seed 0 at every S and seeds 1 and 2 at its repeated S."""
    p = preset(scale)
    if seeds is not None:
        return _frame(_points("capacity", p.capacity, scale), seeds, workers, "setting 1 (Fig. 2)")
    return pd.concat([_frame(_points("capacity", p.capacity, scale), (0,), workers, "setting 1 (Fig. 2), seed 0"),
                      _frame(_points("capacity", p.capacity_repeats, scale), (1, 2), workers,
                             "setting 1 (Fig. 2), seeds 1, 2")], ignore_index=True)


def update_rule_sweep(scale: str, seeds=None, workers: int = 1) -> pd.DataFrame:
    """ICML Fig. 5: the best evaluation loss of each update rule against S, setting 2. One row per run."""
    return _frame(_points("update", preset(scale).update, scale), seeds or preset(scale).update_seeds, workers,
                  "setting 2 (Fig. 5)")


def training_curves(setting: str, variants, S: int, scale: str, seeds, workers: int = 1) -> pd.DataFrame:
    """Evaluation loss against training steps of ``variants`` at one S (ICML Fig. 3 in setting 2 at S = 20,
    Fig. 4 in setting 1 at the largest S). One row per evaluation."""
    points = _points(setting, {v: (S,) for v in variants}, scale)
    df = analysis.histories(run, points, seeds, workers=workers, desc=f"{setting}, S = {S}")
    return df.assign(label=[VARIANTS[v].label for v in df.variant])


def softmax_learning_rates(scale: str, seeds=(0,), workers: int = 1) -> pd.DataFrame:
    """Softmax attention at S = ``softmax_size`` in setting 1, trained ``softmax_steps`` steps at each of
    ``softmax_learning_rates``: whether its failure at this scale is the step limit or the learning rate.
    One row per evaluation."""
    p = preset(scale)
    points = [{"variant": "softmax", "S": p.softmax_size, "setting": "capacity", "scale": scale, "lr": lr,
               "steps": p.softmax_steps} for lr in p.softmax_learning_rates]
    return analysis.histories(run, points, seeds, workers=workers, desc="softmax: learning rate")
