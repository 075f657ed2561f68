"""The claim of RFWP Sec. 4.2 and the rule, declared before the runs, that decides it."""
from __future__ import annotations

import pandas as pd

C4 = ("RFWP Sec. 4.2 / Table 2: on code execution the Linear Transformer's sequence accuracy stays near 0, "
      "while the Delta Net, Delta RNN and RDN reach far higher; the LSTM is the best model")
# Test sequence accuracy (%), mean over seeds, per number of variables: "near 0" is at most NEAR_ZERO,
# "far higher" at least FAR_ABOVE points above the Linear Transformer, "best" at least every other mean.
NEAR_ZERO = 5.0
FAR_ABOVE = 20.0
DELTA_FAMILY = ("delta_net", "delta_rnn", "recurrent_delta_net")


def check_c4(summary: pd.DataFrame) -> tuple[bool | None, str]:
    """C4 on ``rfwp.tasks.algorithmic.summary(runs, "variables")``: the rule holds for every number of
    variables run. Decidable (else None) when every setting has all six models."""
    verdicts, lines = [], []
    for variables, rows in summary.groupby("variables"):
        mean = rows.set_index("model")["mean"]
        if len(mean) < 6:
            return None, f"not decidable: N = {variables} has only {', '.join(mean.index)}"
        lt, lstm = mean["linear_transformer"], mean["lstm"]
        holds = (lt <= NEAR_ZERO and all(mean[m] >= lt + FAR_ABOVE for m in DELTA_FAMILY)
                 and lstm >= mean.drop("lstm").max())
        verdicts.append(holds)
        lines.append(f"N = {variables}: Linear Transformer {lt:.1f}% (near 0: ≤ {NEAR_ZERO:g}), "
                     + ", ".join(f"{rows.set_index('model').label[m]} {mean[m]:.1f}%" for m in DELTA_FAMILY)
                     + f" (far higher: ≥ {FAR_ABOVE:g} points above it), LSTM {lstm:.1f}% against the best other "
                     f"{mean.drop('lstm').max():.1f}%: {'holds' if holds else 'fails'}")
    if not verdicts:
        return None, "no runs"
    return all(verdicts), "test sequence accuracy, mean over seeds. " + "; ".join(lines)


C9 = ("RFWP Table 6: with 5 variables the deeper, thinner Delta RNN (8 layers of 128 in the paper) is more accurate "
      "and more stable (a smaller std over seeds) than the 4-layer one of Table 2")


def check_c9(summary: pd.DataFrame) -> tuple[bool | None, str]:
    """C9 on ``rfwp.tasks.algorithmic.summary(runs, "shape")`` of the 5-variable runs: the Delta RNN's mean test
    sequence accuracy higher and its std lower in shape "deep" than in "table2". Decidable (else None) with both
    shapes run over at least 2 seeds each (a std needs them)."""
    rows = summary[summary.model == "delta_rnn"].set_index("shape")
    if not {"deep", "table2"} <= set(rows.index) or (rows.seeds < 2).any():
        return None, "not decidable: needs the Delta RNN in both shapes with at least 2 seeds each"
    deep, table2 = rows.loc["deep"], rows.loc["table2"]
    parts = {"more accurate": deep["mean"] > table2["mean"], "more stable": deep["std"] < table2["std"]}
    return all(parts.values()), (f"Delta RNN test sequence accuracy, deep {deep['mean']:.1f} ± {deep['std']:.1f}% "
                                 f"({deep.seeds} seeds) against Table 2's shape {table2['mean']:.1f} ± "
                                 f"{table2['std']:.1f}% ({table2.seeds} seeds): "
                                 + "; ".join(f"{p}: {'holds' if h else 'fails'}" for p, h in parts.items()))
