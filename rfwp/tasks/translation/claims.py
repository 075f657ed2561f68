"""The claim of ICML Sec. 6.2 / Table 1 and the rule, declared before the runs, that decides it."""
from __future__ import annotations

import pandas as pd

from rfwp.tasks.translation.presets import PAPER_NAMES

C11 = ("ICML Sec. 6.2 / Table 1: DPFP beats the Linear Transformer and the Performer at d_dot = 256, and the "
       "Performer comes closest to the softmax Transformer at d_dot = 512")
# The runs the rule reads, (attention, d_dot); None: the attention's only d_dot, d_key (64 in the paper).
NEEDED = (("softmax", None), ("linear", None), ("performer", 256), ("dpfp", 256), ("performer", 512), ("dpfp", 512))


def check_c11(runs: pd.DataFrame) -> tuple[bool | None, str]:
    """C11 on runs (columns attention, d_dot, test_bleu; one row per run, the seeds of a setting averaged), by test
    BLEU of the selected checkpoints, all three parts strict:

    1. DPFP at d_dot 256 above the Linear Transformer (at its d_dot, d_key);
    2. DPFP at d_dot 256 above the Performer at 256;
    3. at d_dot 512 the Performer is closer to the softmax Transformer (at d_key) than DPFP at 512 is, the only other
       linear model run there: |softmax − Performer 512| < |softmax − DPFP 512|.

    Decidable (else None) when all six runs are there. On the paper's numbers (26.9 > 26.8; 26.9 > 25.3; 0.0 < 0.6)
    it holds."""
    bleu = runs.groupby(["attention", "d_dot"])["test_bleu"].mean()
    seeds = runs.groupby(["attention", "d_dot"]).size()

    def key(attention: str, d_dot: int | None):
        found = [k for k in bleu.index if k[0] == attention and (d_dot is None or k[1] == d_dot)]
        return found[0] if len(found) == 1 else None

    keys = {(attention, d_dot): key(attention, d_dot) for attention, d_dot in NEEDED}
    missing = [f"{PAPER_NAMES[a]}{'' if d is None else f' at d_dot {d}'}" for (a, d), k in keys.items() if k is None]
    if missing:
        return None, f"not decidable: no runs of {', '.join(missing)}"
    value = {setting: bleu[k] for setting, k in keys.items()}
    softmax, linear = value["softmax", None], value["linear", None]
    parts = {
        "DPFP 256 above Linear": value["dpfp", 256] > linear,
        "DPFP 256 above Performer 256": value["dpfp", 256] > value["performer", 256],
        "Performer 512 closer to Standard than DPFP 512":
            abs(softmax - value["performer", 512]) < abs(softmax - value["dpfp", 512]),
    }
    numbers = ", ".join(f"{PAPER_NAMES[k[0]]} {k[1]} {bleu[k]:.2f}" for k in keys.values())
    verdicts = "; ".join(f"{part}: {'holds' if holds else 'fails'}" for part, holds in parts.items())
    n = sorted(set(seeds[list(keys.values())]))
    return all(parts.values()), f"test BLEU (mean of {'/'.join(map(str, n))} seed(s)): {numbers}. {verdicts}"
