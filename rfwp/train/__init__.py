"""The training layer every task shares.

  runs        a named config trained under a ``Schedule`` into a resumable JSON run record
  supervised  one trainer for token tasks: the papers' optimisers, clipping, accumulation, evaluation on
              fixed splits, state carried across segments (truncated BPTT)
  distributed data-parallel training under torchrun: the process's rank and device, DDP, collectives
"""
from rfwp.train import distributed
from rfwp.train.runs import (DEFAULT_SEEDS, SCALES, RunRecord, Schedule, Trainer, check_scale, config_hash,
                             default_results_dir, execute, record_path)
from rfwp.train.supervised import (ContiguousSegments, OptimiserConfig, SequenceTrainer, ShuffledBatches,
                                   TokenBatch, to_last_scored, token_loss)

__all__ = ["distributed", "DEFAULT_SEEDS", "SCALES", "RunRecord", "Schedule", "Trainer", "check_scale", "config_hash",
           "default_results_dir", "execute", "record_path", "ContiguousSegments", "OptimiserConfig",
           "SequenceTrainer", "ShuffledBatches", "TokenBatch", "to_last_scored", "token_loss"]
