"""ICML Figs. 2-5 and the tables behind them, in the style of ``rfwp.analysis``: lines are means over seeds,
bands the range from the lowest to the highest seed."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from rfwp import analysis
from rfwp.tasks.associative_retrieval.claims import HOLD_THRESHOLD, mean_loss
from rfwp.tasks.associative_retrieval.config import VARIANTS

SPREAD = ("pi", 100)   # seaborn's percentile interval over 100 %: from the lowest seed to the highest


def loss_table(df: pd.DataFrame) -> pd.DataFrame:
    """Best evaluation loss (mean over seeds) with one row per variant, in the sweep's order, and one
    column per S, ascending: the numbers behind ICML Figs. 2 and 5."""
    table = df.pivot_table(index="variant", columns="S", values="loss").reindex(list(dict.fromkeys(df.variant)))
    table.index = [VARIANTS[v].label for v in table.index]
    return table.rename_axis(index="model", columns=None).reset_index()


def _axes():
    analysis.style()
    return plt.subplots(figsize=(7.5, 4.5))


def _loss_against_size(df: pd.DataFrame, title: str, log: bool, capacity: bool):
    fig, ax = _axes()
    sns.lineplot(df, x="S", y="loss", hue="label", errorbar=SPREAD, marker="o", markersize=5, ax=ax)
    if capacity:
        colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
        for variant, runs in mean_loss(df).groupby("variant", sort=False):
            if VARIANTS[variant].memory == "sum" and runs.d_dot.iloc[0] <= df.S.max():
                ax.axvline(runs.d_dot.iloc[0], color=colours.get(VARIANTS[variant].label, "grey"), ls="--", lw=0.8)
        ax.axhline(HOLD_THRESHOLD, color="grey", ls=":", lw=1)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="number of unique keys S", ylabel="best evaluation loss", title=title)
    ax.legend(fontsize=8, title=None)
    fig.tight_layout()
    return fig


def plot_capacity(capacity: pd.DataFrame):
    """ICML Fig. 2 from ``capacity_sweep``: best evaluation loss against S in setting 1; dashed lines mark each
    sum-rule memory's capacity d_dot, the dotted line the loss below which a memory holds."""
    return _loss_against_size(capacity, "Setting 1 (capacity): L = S, without replacement", False, True)


def plot_update_sweep(update: pd.DataFrame):
    """ICML Fig. 5 from ``update_rule_sweep``: best evaluation loss against S in setting 2 (log scale)."""
    return _loss_against_size(update, "Setting 2 (update): L = 2S, with replacement", True, False)


def plot_curves(curves: pd.DataFrame, title: str, hue: str = "label"):
    """ICML Figs. 3 and 4 from ``training_curves``: evaluation loss against training steps (log scale)."""
    fig, ax = _axes()
    sns.lineplot(curves, x="step", y="loss", hue=hue, errorbar=SPREAD, ax=ax)
    ax.set(yscale="log", xlabel="training step", ylabel="evaluation loss", title=title)
    ax.legend(fontsize=8, title=None if hue == "label" else hue)
    fig.tight_layout()
    return fig
