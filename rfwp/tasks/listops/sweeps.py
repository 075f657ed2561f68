"""The runs behind Table 2's ListOps columns, as tidy DataFrames. ``workers`` trains missing runs in that
many single-threaded processes (``rfwp.analysis.sweep``)."""
from __future__ import annotations

import pandas as pd

from rfwp import analysis
from rfwp.tasks.algorithmic import MODELS
from rfwp.tasks.listops.presets import preset
from rfwp.tasks.listops.trainer import run


def _grid(scale: str, seeds):
    """(points, seeds) per depth: every model, with the preset's seeds unless ``seeds``."""
    for depth, preset_seeds in preset(scale).seeds.items():
        yield depth, [{"model": m, "depth": depth, "scale": scale} for m in MODELS], seeds or preset_seeds


def table2_runs(scale: str, seeds=None, workers: int = 1) -> pd.DataFrame:
    """One row per run: model, depth, seed and the metrics of the evaluation selected on validation."""
    return pd.concat([analysis.sweep(run, points, s, workers=workers, desc=f"ListOps, depth {d}")
                      for d, points, s in _grid(scale, seeds)], ignore_index=True)


def learning_curves(scale: str, seeds=None, workers: int = 1) -> pd.DataFrame:
    """One row per evaluation of every run of ``table2_runs``."""
    return pd.concat([analysis.histories(run, points, s, workers=workers, desc=f"ListOps, depth {d}")
                      for d, points, s in _grid(scale, seeds)], ignore_index=True)
