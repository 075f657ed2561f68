"""The runs behind RFWP Tables 1 and 4 and ICML Tables 2-5, as tidy DataFrames: one row per run with the fields of
its ``Variant`` and its final evaluation (``record.final``). ``workers`` trains missing runs in that many
single-threaded processes. A row is a model and the variant fields that differ from Table 1's."""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from rfwp import analysis
from rfwp.models import TABLE1_MODELS
from rfwp.tasks.language_modelling.presets import preset
from rfwp.tasks.language_modelling.trainer import Variant, run

TABLE1 = [dict(model=m) for m in TABLE1_MODELS] + [dict(model="delta_rnn", full_context=True),
                                                   dict(model="recurrent_delta_net", full_context=True)]
# ICML Table 2: sum against delta rule for the Linear Transformer (ELU + 1: Table 1's runs) and the Performer
ICML_TABLE2 = [dict(model="linear_transformer"), dict(model="delta_net"),
               dict(model="linear_transformer", feature_map="favor"), dict(model="delta_net", feature_map="favor")]
# ICML Table 4: trained and evaluated without truncating the context
ICML_TABLE4 = [dict(model=m, full_context=True) for m in ("linear_transformer", "delta_net", "transformer_xl")]
NOTEBOOK_RUNS = TABLE1 + [row for row in ICML_TABLE2 + ICML_TABLE4 if row not in TABLE1]


def points(rows, scale: str) -> list[dict]:
    """Each row as ``run``'s keyword arguments: the model, the scale and every field of its variant."""
    return [{"model": row["model"], "scale": scale, **asdict(Variant(**{k: v for k, v in row.items() if k != "model"}))}
            for row in rows]


def runs(scale: str, rows=NOTEBOOK_RUNS, seeds=(0,), workers: int = 1) -> pd.DataFrame:
    """One row per run of ``rows``: model, the variant's fields, seed, the final evaluation's metrics
    (``valid_perplexity``, ``test_perplexity``, ...), steps trained and wall time in seconds."""
    out = []
    for point, seed, record in analysis.sweep_records(run, points(rows, scale), seeds, workers=workers,
                                                      desc="language modelling"):
        out.append({**point, "seed": seed, **record.final, "steps": record.steps_done, "wall_time": record.wall_time})
    return pd.DataFrame(out)


def learning_curves(scale: str, rows=NOTEBOOK_RUNS, seeds=(0,), workers: int = 1) -> pd.DataFrame:
    """One row per evaluation (validation loss during training) of every run of ``rows``."""
    return analysis.histories(run, points(rows, scale), seeds, workers=workers, desc="language modelling")


# RFWP Table 4: every version of the Delta RNN, Delta LSTM and Delta MLP (Table 1's are its B, D and B)
TABLE4 = ([dict(model="delta_rnn", version=v) for v in "AB"] + [dict(model="delta_lstm", version=v) for v in "ABCD"]
          + [dict(model="delta_mlp", version=v) for v in "AB"])
# ICML Table 3: the Delta Net with and without absolute positions and attention normalisation
ICML_TABLE3 = [dict(model="delta_net", positional_encoding=p, attention_normalisation=a)
               for a in (True, False) for p in (True, False)]


def icml_table5(scale: str) -> list[dict]:
    """ICML Table 5's rows: the Performer and DPFP with the sum and the delta rule at d_dot = 2 d_head per head
    (the paper's m = 16 and ν = 1 with heads of 16: d_dot 256 over 8 heads), at ``scale``'s head size."""
    m = preset(scale).architecture.head_size
    return [dict(model=model, feature_map="favor", m=m) for model in ("linear_transformer", "delta_net")] + [
        dict(model=model, feature_map="dpfp", nu=1) for model in ("linear_transformer", "delta_net")]
