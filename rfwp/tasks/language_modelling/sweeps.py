"""The runs behind RFWP Table 1 and ICML Tables 2 and 4, as tidy DataFrames: one row per run with its final
evaluation (``record.final``). ``workers`` trains missing runs in that many single-threaded processes."""
from __future__ import annotations

import pandas as pd

from rfwp import analysis
from rfwp.models import TABLE1_MODELS
from rfwp.tasks.language_modelling.trainer import run

# (model, full_context, feature_map) of every row
TABLE1 = [(m, False, "elu") for m in TABLE1_MODELS] + [("delta_rnn", True, "elu"), ("recurrent_delta_net", True, "elu")]
# ICML Table 2: sum against delta rule for the Linear Transformer (ELU + 1: Table 1's runs) and the Performer
ICML_TABLE2 = [("linear_transformer", False, "elu"), ("delta_net", False, "elu"),
               ("linear_transformer", False, "favor"), ("delta_net", False, "favor")]
# ICML Table 4: trained and evaluated without truncating the context
ICML_TABLE4 = [("linear_transformer", True, "elu"), ("delta_net", True, "elu"), ("transformer_xl", True, "elu")]
ALL_RUNS = list(dict.fromkeys(TABLE1 + ICML_TABLE2 + ICML_TABLE4))


def _points(rows, scale: str) -> list[dict]:
    return [{"model": m, "scale": scale, "full_context": full, "feature_map": fm} for m, full, fm in rows]


def runs(scale: str, rows=ALL_RUNS, seeds=(0,), workers: int = 1) -> pd.DataFrame:
    """One row per run of ``rows``: model, full_context, feature_map, seed, the final evaluation's metrics
    (``valid_perplexity``, ``test_perplexity``, ...), steps trained and wall time in seconds."""
    out = []
    for point, seed, record in analysis.sweep_records(run, _points(rows, scale), seeds, workers=workers,
                                                      desc="language modelling"):
        out.append({**point, "seed": seed, **record.final, "steps": record.steps_done, "wall_time": record.wall_time})
    return pd.DataFrame(out)


def learning_curves(scale: str, rows=ALL_RUNS, seeds=(0,), workers: int = 1) -> pd.DataFrame:
    """One row per evaluation (validation loss during training) of every run of ``rows``."""
    return analysis.histories(run, _points(rows, scale), seeds, workers=workers, desc="language modelling")
