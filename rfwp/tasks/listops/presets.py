"""What the ListOps notebook runs at each scale (the models are code execution's: ``CODE_EXECUTION``)."""
from __future__ import annotations

from dataclasses import dataclass

from rfwp.models import ModelConfig
from rfwp.tasks.code_execution.presets import CODE_EXECUTION
from rfwp.train import check_scale


@dataclass(frozen=True)
class ListOpsScale:
    """What the ListOps notebook runs at one scale."""
    architecture: ModelConfig
    sizes: tuple[int, int, int]            # train, valid, test lists
    batch_size: int
    steps: int                             # optimiser steps of a run
    eval_every: int                        # steps between evaluations (model selection)
    seeds: dict[int, tuple[int, ...]]      # depth → seeds of every model
    lr: float = 3e-4                       # the Transformer family's (the LSTM's is always 3e-3)


# App. B.3: the code execution setting (200 epochs of 10,000 lists in batches of 64), depths 10 and 15,
# three seeds each (Table 2's caption).
PAPER = ListOpsScale(CODE_EXECUTION, sizes=(10_000, 1_000, 1_000), batch_size=64, steps=200 * 156, eval_every=156,
                     seeds={10: (0, 1, 2), 15: (0, 1, 2)})
SMOKE = ListOpsScale(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, lstm_hidden=32, lstm_embedding=16),
                     sizes=(128, 32, 32), batch_size=16, steps=20, eval_every=10, seeds={2: (0,)})
CPU = PAPER


def preset(scale: str) -> ListOpsScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]
