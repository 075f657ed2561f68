"""The claim of RFWP Sec. 4.3 and the rule, declared before the runs, that decides it."""
from __future__ import annotations

import pandas as pd

C5 = ("RFWP Sec. 4.3 / Table 2: on sequential ListOps the Delta Net, Delta RNN and RDN beat both the Linear "
      "Transformer and the Transformer")
DELTA_FAMILY = ("delta_net", "delta_rnn", "recurrent_delta_net")
BASELINES = ("linear_transformer", "transformer")


def check_c5(summary: pd.DataFrame) -> tuple[bool | None, str]:
    """C5 on ``rfwp.tasks.algorithmic.summary(runs, "depth")``: at every depth run, the mean test accuracy of
    each of the three delta-rule models is above the mean of both baselines. Decidable (else None) when
    every depth has those five models."""
    verdicts, lines = [], []
    for depth, rows in summary.groupby("depth"):
        mean = rows.set_index("model")["mean"]
        if not set(DELTA_FAMILY + BASELINES) <= set(mean.index):
            return None, f"not decidable: depth {depth} has only {', '.join(mean.index)}"
        bar = mean[list(BASELINES)].max()
        holds = all(mean[m] > bar for m in DELTA_FAMILY)
        verdicts.append(holds)
        label = rows.set_index("model").label
        lines.append(f"depth {depth}: " + ", ".join(f"{label[m]} {mean[m]:.1f}%" for m in DELTA_FAMILY)
                     + " against " + ", ".join(f"{label[m]} {mean[m]:.1f}%" for m in BASELINES)
                     + f": {'holds' if holds else 'fails'}")
    if not verdicts:
        return None, "no runs"
    return all(verdicts), "test accuracy, mean over seeds. " + "; ".join(lines)
