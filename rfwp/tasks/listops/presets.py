"""What the ListOps notebook runs at each scale (the models are code execution's: ``CODE_EXECUTION``)."""
from __future__ import annotations

from dataclasses import dataclass

from rfwp.models import ModelConfig
from rfwp.tasks.code_execution.presets import CODE_EXECUTION, CPU as CODE_EXECUTION_CPU
from rfwp.train import check_scale


@dataclass(frozen=True)
class ListOpsScale:
    """What the ListOps notebook runs at one scale."""
    architecture: ModelConfig
    sizes: tuple[int, int, int]            # train, valid, test lists
    batch_size: int
    steps: dict[int, int]                  # depth → optimiser steps of a run
    eval_every: int                        # steps between evaluations (model selection)
    seeds: dict[int, tuple[int, ...]]      # depth → seeds of every model
    lr: float = 3e-4                       # the Transformer family's (the LSTM's is always 3e-3)


# App. B.3: the code execution setting (200 epochs of 10,000 lists in batches of 64), depths 10 and 15,
# three seeds each (Table 2's caption).
PAPER = ListOpsScale(CODE_EXECUTION, sizes=(10_000, 1_000, 1_000), batch_size=64, steps={10: 200 * 156, 15: 200 * 156},
                     eval_every=156, seeds={10: (0, 1, 2), 15: (0, 1, 2)})
SMOKE = ListOpsScale(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, lstm_hidden=32, lstm_embedding=16),
                     sizes=(128, 32, 32), batch_size=16, steps={2: 20}, eval_every=10, seeds={2: (0,)})
# Chosen by measurement on 2 cores (one run a core), for about 3 hours in all: code execution's cpu architecture
# (width 64, 2 layers, 4 heads of 16, feed-forward 256; the LSTM 128 with an embedding of 64) and its lr of 1e-3
# for the Transformer family. Kept: the exact depths 10 and 15 (lists of about 100 and 190 tokens), 10,000
# training lists, batch 64. A batch is padded to its longest list (about 215 and 410 tokens); alone, a step took
# about 0.45 s at depth 10 and 1.1 s at depth 15, so depth 10 trains 1,200 steps (8 epochs) and depth 15 600
# (4 epochs). Two runs at a time, a run took 6 to 19 minutes with its evaluations, and one seed of all twelve
# (model, depth) pairs about 80 minutes: two seeds, not the paper's three, keep the notebook near 3 hours.
CPU = ListOpsScale(CODE_EXECUTION_CPU.architecture, sizes=(10_000, 500, 500), batch_size=64, steps={10: 1_200, 15: 600},
                   eval_every=100, seeds={10: (0, 1), 15: (0, 1)}, lr=CODE_EXECUTION_CPU.lr)


def preset(scale: str) -> ListOpsScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]
