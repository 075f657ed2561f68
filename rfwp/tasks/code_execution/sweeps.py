"""The runs behind Tables 2 and 5, as tidy DataFrames. ``workers`` trains missing runs in that many
single-threaded processes (``rfwp.analysis.sweep``)."""
from __future__ import annotations

import pandas as pd

from rfwp import analysis
from rfwp.tasks.algorithmic import MODELS
from rfwp.tasks.code_execution.presets import preset
from rfwp.tasks.code_execution.trainer import run


def _grid(scale: str, seeds, semantics: str):
    """(points, seeds) per number of variables: every model, with the preset's seeds unless ``seeds``."""
    for variables, preset_seeds in preset(scale).seeds.items():
        points = [{"model": m, "variables": variables, "scale": scale, "semantics": semantics} for m in MODELS]
        yield variables, points, seeds or preset_seeds


def table2_runs(scale: str, seeds=None, workers: int = 1, semantics: str = "correct") -> pd.DataFrame:
    """One row per run: model, variables, seed and the metrics of the evaluation selected on validation."""
    return pd.concat([analysis.sweep(run, points, s, workers=workers, desc=f"code execution, N = {n}")
                      for n, points, s in _grid(scale, seeds, semantics)], ignore_index=True)


def learning_curves(scale: str, seeds=None, workers: int = 1, semantics: str = "correct") -> pd.DataFrame:
    """One row per evaluation of every run of ``table2_runs``."""
    return pd.concat([analysis.histories(run, points, s, workers=workers, desc=f"code execution, N = {n}")
                      for n, points, s in _grid(scale, seeds, semantics)], ignore_index=True)


# RFWP Table 6 (App. B.2), 5 variables: the LSTM of Table 2 and a wider one; the delta-rule models in Table 2's
# architecture and deeper and thinner (the "table2" runs are Table 2's own)
TABLE6 = [("lstm", "table2"), ("lstm", "wide")] + [(m, shape) for shape in ("table2", "deep")
                                                   for m in ("delta_net", "delta_rnn", "recurrent_delta_net")]


def table6_runs(scale: str, seeds=None, workers: int = 1) -> pd.DataFrame:
    """One row per run of Table 6 (model, shape, seed, the selected evaluation's metrics), 5 variables, with the
    preset's 5-variable seeds unless ``seeds`` (seed 0 where the scale runs no 5-variable programs)."""
    seeds = seeds or preset(scale).seeds.get(5, (0,))
    points = [{"model": m, "variables": 5, "scale": scale, "shape": shape} for m, shape in TABLE6]
    return analysis.sweep(run, points, seeds, workers=workers, desc="code execution, Table 6")
