"""The paper's configurations of the algorithmic tasks, and what the code execution notebook runs at each scale."""
from __future__ import annotations

from dataclasses import dataclass, replace

from rfwp.models import ModelConfig
from rfwp.train import check_scale

# RFWP Sec. 4.2 and Appendix B: code execution and sequential ListOps share this architecture;
# the LSTM baseline has one layer of 256 and an input embedding of 128 (405 K parameters).
CODE_EXECUTION = ModelConfig(d_model=256, n_layers=4, n_heads=16, d_ff=1024, dropout=0.1,
                             lstm_hidden=256, lstm_layers=1, lstm_embedding=128)
# Table 2's and Table 6's parameter counts of CODE_EXECUTION (millions).
PAPER_PARAMETERS = {"lstm": 0.405, "transformer": 3.2, "linear_transformer": 3.2, "delta_net": 3.2,
                    "delta_rnn": 3.7, "recurrent_delta_net": 3.2}


@dataclass(frozen=True)
class CodeExecutionScale:
    """What the code execution notebook runs at one scale."""
    architecture: ModelConfig
    statements: int                        # S of every program
    sizes: tuple[int, int, int]            # train, valid, test programs
    batch_size: int
    steps: int                             # optimiser steps of a run
    eval_every: int                        # steps between evaluations (model selection)
    seeds: dict[int, tuple[int, ...]]      # N (variables) → seeds of every model
    lr: float = 3e-4                       # the Transformer family's (the LSTM's is always 3e-3)
    # Table 6 (App. B.2), with 5 variables: the Transformer family deeper and thinner, the LSTM wider
    deep: ModelConfig | None = None
    wide_lstm: int | None = None


# App. B.2: 200 epochs of 10,000 programs in batches of 64 (156 steps an epoch), evaluated every epoch;
# three seeds with 3 variables, six with 5 (Table 2's caption).
# Table 6: 8 layers of 128 with 8 heads and a feed-forward of 256 (1.1 M parameters), and an LSTM of 512.
PAPER = CodeExecutionScale(CODE_EXECUTION, statements=100, sizes=(10_000, 1_000, 1_000), batch_size=64,
                           steps=200 * 156, eval_every=156, seeds={3: (0, 1, 2), 5: (0, 1, 2, 3, 4, 5)},
                           deep=replace(CODE_EXECUTION, d_model=128, n_layers=8, n_heads=8, d_ff=256), wide_lstm=512)
SMOKE_ARCHITECTURE = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, lstm_hidden=32, lstm_embedding=16)
SMOKE = CodeExecutionScale(SMOKE_ARCHITECTURE, statements=5, sizes=(128, 32, 32), batch_size=16, steps=20,
                           eval_every=10, seeds={3: (0,)},
                           deep=replace(SMOKE_ARCHITECTURE, d_model=16, n_layers=2, n_heads=1, d_ff=32), wide_lstm=64)
# Chosen by measurement on 2 cores (one run a core): a paper run would take about 50 hours. Kept: both N, every
# model, the optimisers, the selection on validation, three seeds. Shrunk: width 64 and 2 layers (4 heads of 16,
# feed-forward 256; the LSTM 128 with an embedding of 64), programs of S = 10 statements (about 45 tokens; at
# S = 15 the LSTM and the Delta Net learned much more slowly in the same time) and 3,000 steps (19 epochs,
# evaluated every 150): the Transformer trains about 7 steps a second here, the LSTM 20, so a run takes at most
# about 8 minutes; after 1,200 steps both were still climbing (LSTM 13%, Transformer 7% valid sequence
# accuracy, N = 3). The Transformer family's lr is 1e-3 rather than 3e-4, as usual for a model 4 times
# narrower trained 10 times shorter.
# Table 6 at this scale keeps the paper's proportions: twice the depth at half the width, heads of 16, a
# feed-forward of twice the width (about a third of the parameters), and an LSTM twice as wide.
CPU_ARCHITECTURE = ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, dropout=0.1, lstm_hidden=128,
                               lstm_layers=1, lstm_embedding=64)
CPU = CodeExecutionScale(CPU_ARCHITECTURE, statements=10, sizes=(10_000, 500, 500), batch_size=64, steps=3_000,
                         eval_every=150, seeds={3: (0, 1, 2), 5: (0, 1, 2)}, lr=1e-3,
                         deep=replace(CPU_ARCHITECTURE, d_model=32, n_layers=4, n_heads=2, d_ff=64), wide_lstm=256)


def preset(scale: str) -> CodeExecutionScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]
