"""The runs behind ICML Table 1 at a scale, as a tidy DataFrame: one row per run with the evaluation of its selected
checkpoint (``record.final``). ``workers`` trains missing runs in that many single-threaded processes."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from rfwp import analysis
from rfwp.tasks.translation.presets import preset
from rfwp.tasks.translation.trainer import run


def runs(scale: str, settings: tuple[tuple[str, int], ...] | None = None, seeds: tuple[int, ...] | None = None,
         workers: int = 1, data_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run of ``settings`` ((attention, d_dot) pairs; None: the scale's, ICML Table 1's) and seed
    (None: the scale's): attention, d_dot, seed, the selected checkpoint's metrics (``valid_bleu``, ``test_bleu``,
    ``selected_step``, ...) and texts (``bleu_signature``, ``example<i>_*``), steps trained and wall time in
    seconds. ``data_dir``: WMT14's folder at paper scale."""
    p = preset(scale)
    points = [{"attention": attention, "d_dot": d_dot, "scale": scale} for attention, d_dot in settings or p.settings]
    train = run if data_dir is None else partial(run, data_dir=str(data_dir))
    rows = []
    for point, seed, record in analysis.sweep_records(train, points, seeds or p.seeds, workers=workers,
                                                      desc="translation"):
        rows.append({**point, "seed": seed, **record.final, "steps": record.steps_done, "wall_time": record.wall_time})
    return pd.DataFrame(rows)
