"""RFWP Table 6 from the runs of ``sweeps.table6_runs``, beside the paper's."""
from __future__ import annotations

import pandas as pd

import rfwp.paper
from rfwp.models import MODELS, build_model
from rfwp.tasks import algorithmic
from rfwp.tasks.code_execution.sweeps import TABLE6
from rfwp.tasks.code_execution.trainer import CodeExecutionDataset, architecture


def _shape(model: str, config) -> str:
    """The shape as the paper writes it: width × depth (the LSTM: its hidden size, one layer)."""
    return f"{config.lstm_hidden} × 1" if model == "lstm" else f"{config.d_model} × {config.n_layers}"


def table6(runs: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per model and shape: our test sequence accuracy (%) as mean ± std, min and max over seeds, and the number
    of parameters at ``scale``; beside them the paper's accuracy for the same model and shape at its scale. In
    Table 6's order."""
    paper = rfwp.paper.table("rfwp", "T6")
    ours = algorithmic.summary(runs, "shape")
    dataset = CodeExecutionDataset(variables=5, statements=100)
    order = [TABLE6.index((m, shape)) for m, shape in zip(ours.model, ours["shape"])]
    ours = ours.assign(order=order).sort_values("order")
    rows = []
    for _, row in ours.iterrows():
        config = architecture(row.model, scale, row["shape"])
        paper_config = architecture(row.model, "paper", row["shape"])
        width = paper_config.lstm_hidden if row.model == "lstm" else paper_config.d_model
        theirs = paper[(paper.model == MODELS[row.model].name) & (paper.width == width)].iloc[0]
        params = sum(p.numel() for p in build_model(row.model, algorithmic.model_config(row.model, config, dataset))
                     .parameters()) / 1e6
        rows.append({"model": row.label, "shape": _shape(row.model, config), "ours": f"{row['mean']:.1f} ± "
                     f"{row['std']:.1f}", "ours_min": round(row["min"], 1), "ours_max": round(row["max"], 1),
                     "seeds": row.seeds, "params_M": round(params, 3), "paper_shape": _shape(row.model, paper_config),
                     "paper": f"{theirs.accuracy:.1f} ± {theirs.accuracy_std:.1f}", "paper_min": theirs.accuracy_min,
                     "paper_max": theirs.accuracy_max, "paper_params_M": theirs.params_M})
    return pd.DataFrame(rows)
