"""The sequences of ICML Sec. 6.1: L key-value pairs over S symbols, and the queries scored on them.

  setting "capacity" (Sec. 6.1.1): L = S without replacement (a permutation of the keys and one of the values)
  setting "update" (Sec. 6.1.2): L = 2S with replacement; the target is the value at the query's last occurrence
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Batch(NamedTuple):
    keys: Tensor      # (B, L) key symbols 0..S-1
    values: Tensor    # (B, L) value symbols 0..S-1
    queries: Tensor   # (B, Q) queried keys
    targets: Tensor   # (B, Q) value at the query's last occurrence in the sequence
    mask: Tensor      # (B, Q) bool: the query occurs in the sequence (only these are scored)


def sample_sequences(setting: str, S: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """n sequences of keys and values, each (n, L)."""
    if setting == "capacity":
        # L = S without replacement: a random permutation of all keys and one of all values.
        keys = torch.rand(n, S, generator=generator).argsort(-1)
        values = torch.rand(n, S, generator=generator).argsort(-1)
    else:
        keys = torch.randint(S, (n, 2 * S), generator=generator)
        values = torch.randint(S, (n, 2 * S), generator=generator)
    return keys, values


def last_values(keys: Tensor, values: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
    """For each query, the value at its last occurrence in the sequence, and whether it occurs."""
    hits = keys.unsqueeze(1) == queries.unsqueeze(2)                      # (B, Q, L)
    position = torch.arange(keys.shape[1]).expand_as(hits)
    last = torch.where(hits, position, -1).max(-1).values                  # -1 where absent
    targets = values.gather(1, last.clamp(min=0))
    return targets, last >= 0


def training_batch(setting: str, S: int, batch_size: int, generator: torch.Generator) -> Batch:
    """One query per sequence: the key at a uniformly drawn position ("q is randomly chosen to be
    one of the L keys"), so keys that recur in setting 2 are queried more often."""
    keys, values = sample_sequences(setting, S, batch_size, generator)
    position = torch.randint(keys.shape[1], (batch_size, 1), generator=generator)
    queries = keys.gather(1, position)
    targets, mask = last_values(keys, values, queries)
    return Batch(keys, values, queries, targets, mask)


def evaluation_batch(setting: str, S: int, n_sequences: int, generator: torch.Generator) -> Batch:
    """Every key queried on each of n sequences; in setting 2 only the keys that occur count.
    The sequences have the training length, 2S in setting 2 (a deviation fixed: the authors' code
    evaluated setting 2 on sequences of length S)."""
    keys, values = sample_sequences(setting, S, n_sequences, generator)
    queries = torch.arange(S).expand(n_sequences, S)
    targets, mask = last_values(keys, values, queries)
    return Batch(keys, values, queries, targets, mask)
