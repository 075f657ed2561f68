"""One supervised trainer for token tasks (code execution, ListOps, language modelling), for ``execute``.

    trainer = SequenceTrainer(model, OptimiserConfig(lr=3e-4, betas=(0.9, 0.995)),
                              train=ShuffledBatches(dataset, batch_size=64, seed=seed),
                              evaluation={"valid": valid_batches, "test": test_batches}, metrics=accuracies)
    execute(name, config, lambda config, seed: trainer,
            Schedule(steps=..., monitor="valid_sequence_accuracy", mode="max"), seed=seed, scale=scale)

A ``TokenBatch`` holds inputs and targets (batch, length) and a mask of the positions that are scored. With
``score_targets`` the model scores the targets itself (``forward(..., targets=)`` returns −log p(targets), as
``SequenceModel``'s does), so that an adaptive softmax never computes the probability of every word.
Each optimiser step takes ``accumulate`` batches from the training stream (gradient accumulation, exact:
the loss is the mean over every scored token of all of them), clips the global gradient norm, steps Adam
and the learning-rate schedule (linear warm-up, then constant or cosine decay). With ``carry_state`` the
model's state flows from one batch to the next, detached between them (truncated backpropagation through
time), in training and within each evaluation split. Evaluation runs with dropout off on fixed splits and
reports, per split, the mean token loss and every metric of ``metrics`` as ``<split>_<name>``.

Under torchrun (data-parallel training, ``rfwp.train.distributed``) the model trains in DistributedDataParallel,
each process on its own columns of the stream (``ContiguousSegments(..., rank=, world_size=)``), and the step
is the one a single process takes on all columns: the loss is the mean over the scored tokens of every process,
and ``loss`` and ``tokens`` are reported for them all. Every process evaluates the whole of each split.
Batches and the carried state go to the model's device.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfwp.models import detach_state
from rfwp.train import distributed


class TokenBatch(NamedTuple):
    inputs: Tensor                  # (batch, length) token ids (or (batch, length, d_input) features)
    targets: Tensor                 # (batch, length) class ids
    mask: Tensor                    # (batch, length) bool: the positions that are scored
    reset: Tensor | None = None     # (batch, length) bool: the model's state is zeroed before these steps


def to_last_scored(batch: TokenBatch) -> TokenBatch:
    """The batch cut after its last scored position: a causal model's outputs up to there never depend on the
    padding after it, so this saves its cost (sequences of many lengths are padded to the longest of all)."""
    length = int(batch.mask.any(0).nonzero().max()) + 1
    return TokenBatch(*(None if t is None else t[:, :length] for t in batch))


class BatchStream(Protocol):
    """The training data: an endless, resumable stream of batches."""

    def next(self) -> TokenBatch: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class EpochOrder:
    """Indices 0 … n − 1 taken k at a time, in a new random order every epoch from a generator of its own, seeded
    with ``seed``; a take that would run past the end starts the next epoch (the rest of the last is dropped).
    Resumes where it stopped."""

    def __init__(self, n: int, seed: int):
        self.n, self.generator = n, torch.Generator().manual_seed(seed)
        self.order, self.position, self.epoch = torch.randperm(n, generator=self.generator), 0, 0

    def take(self, k: int) -> Tensor:
        if self.position + k > self.n:
            self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
            self.epoch += 1
        self.position += k
        return self.order[self.position - k:self.position]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position,
                "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position, self.epoch = state["order"], state["position"], state["epoch"]


class ShuffledBatches:
    """Epochs over a fixed set of sequences (inputs, targets, mask tensors with the same first axis), each
    in a new random order from a generator of the stream's own (``EpochOrder``), each batch cut after its last
    scored position; the last incomplete batch of an epoch is dropped. Resumes where it stopped."""

    def __init__(self, inputs: Tensor, targets: Tensor, mask: Tensor, batch_size: int, seed: int):
        if not len(inputs) == len(targets) == len(mask):
            raise ValueError(f"inputs, targets and mask need one row per sequence, got {len(inputs)}, "
                             f"{len(targets)} and {len(mask)}")
        if not 1 <= batch_size <= len(inputs):
            raise ValueError(f"batch_size must be between 1 and the {len(inputs)} sequences, got {batch_size}")
        self.inputs, self.targets, self.mask, self.batch_size = inputs, targets, mask, batch_size
        self.order = EpochOrder(len(inputs), seed)

    @property
    def epoch(self) -> int:
        return self.order.epoch

    def next(self) -> TokenBatch:
        rows = self.order.take(self.batch_size)
        return to_last_scored(TokenBatch(self.inputs[rows], self.targets[rows], self.mask[rows]))

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)


class ContiguousSegments:
    """A token stream for language modelling: the stream is cut into ``batch_size`` rows (the columns of
    Transformer-XL's layout), and batch i holds the i-th consecutive segment of every row, so a model that carries
    its state across batches reads each row as one text. Targets are the next tokens; after the last segment
    the stream starts again.

    With ``world_size`` processes (data-parallel training) process ``rank`` reads the rows [rank·b, (rank+1)·b),
    b = batch_size / world_size, of the layout that one process with ``batch_size`` reads: together the
    processes read exactly that process's batches."""

    def __init__(self, tokens: Tensor, batch_size: int, segment_length: int, *, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} does not split over {world_size} processes: use a multiple "
                             f"of {world_size}")
        rows = (len(tokens) - 1) // batch_size
        if rows < segment_length:
            raise ValueError(f"{len(tokens)} tokens make rows of {rows} for batch_size {batch_size}, shorter "
                             f"than one segment of {segment_length}; use a smaller batch or segment")
        share = batch_size // world_size
        mine = slice(rank * share, (rank + 1) * share)
        self.inputs = tokens[:rows * batch_size].view(batch_size, rows)[mine]
        self.targets = tokens[1:rows * batch_size + 1].view(batch_size, rows)[mine]
        self.segment_length, self.position = segment_length, 0

    def __len__(self) -> int:
        return math.ceil(self.inputs.shape[1] / self.segment_length)

    def __iter__(self):
        """One pass over the stream from its start (an evaluation split)."""
        for start in range(0, self.inputs.shape[1], self.segment_length):
            yield self._segment(start)

    def _segment(self, start: int) -> TokenBatch:
        end = start + self.segment_length
        inputs = self.inputs[:, start:end]
        # the first segment of a pass starts a new text: the state carried from the end of the last pass goes
        reset = torch.zeros_like(inputs, dtype=torch.bool)
        reset[:, 0] = start == 0
        return TokenBatch(inputs, self.targets[:, start:end], torch.ones_like(inputs, dtype=torch.bool), reset)

    def next(self) -> TokenBatch:
        batch = self._segment(self.position)
        self.position += self.segment_length
        if self.position >= self.inputs.shape[1]:
            self.position = 0
        return batch

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


@dataclass(frozen=True)
class OptimiserConfig:
    """Adam with the paper's per-task settings, a learning-rate schedule, clipping and accumulation."""
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0             # linear warm-up from 0 to lr over these steps
    decay: str = "constant"           # after warm-up: "constant", or "cosine" to 0 at total_steps
    total_steps: int | None = None    # the cosine's length (the run's step budget)
    clip: float | None = None         # clip the gradients' global norm to this
    accumulate: int = 1               # batches per optimiser step

    def __post_init__(self):
        if self.decay not in ("constant", "cosine"):
            raise ValueError(f"decay must be 'constant' or 'cosine', got {self.decay!r}")
        if self.decay == "cosine" and (self.total_steps is None or self.total_steps <= self.warmup_steps):
            raise ValueError(f"cosine decay needs total_steps above warmup_steps={self.warmup_steps}, "
                             f"got {self.total_steps}")
        if self.accumulate < 1 or self.warmup_steps < 0:
            raise ValueError(f"accumulate must be ≥ 1 and warmup_steps ≥ 0, got {self.accumulate}, "
                             f"{self.warmup_steps}")

    def factor(self, step: int) -> float:
        """The learning rate at optimiser step ``step`` (0-based) as a fraction of lr."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))


# metrics(logits, batch) -> {name: (sum, count)}: summed over an evaluation split, reported as sum / count.
Metrics = Callable[[Tensor, TokenBatch], dict[str, tuple[float, float]]]


def token_loss(logits: Tensor, batch: TokenBatch) -> tuple[Tensor, Tensor]:
    """Cross-entropy summed over the scored positions, and their number."""
    losses = F.cross_entropy(logits.flatten(0, -2), batch.targets.flatten(), reduction="none")
    mask = batch.mask.flatten()
    return losses[mask].sum(), mask.sum()


def _to(value, device: torch.device):
    """``value`` (a batch, a carried state: tensors in tuples, named tuples and lists) with its tensors on
    ``device`` (no copy where they are there already)."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to(v, device) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


class SequenceTrainer:
    """The ``rfwp.train.Trainer`` of every token task: see the module's docstring. ``model`` stays the model
    itself (evaluation, ``state_dict`` and a task's own code use it); ``replica`` is what training calls: the
    model in DistributedDataParallel under torchrun, else the model."""

    def __init__(self, model: nn.Module, optimiser: OptimiserConfig, train: BatchStream,
                 evaluation: dict[str, Iterable[TokenBatch]], metrics: Metrics | None = None,
                 carry_state: bool = False, score_targets: bool = False):
        if score_targets and metrics is not None:
            raise ValueError("score_targets gives the metrics no logits: use one or the other")
        self.model, self.config, self.train, self.evaluation = model, optimiser, train, evaluation
        self.metrics, self.carry_state, self.score_targets = metrics, carry_state, score_targets
        self.optimiser = torch.optim.Adam(model.parameters(), lr=optimiser.lr, betas=optimiser.betas,
                                          eps=optimiser.eps)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, optimiser.factor)
        self.state = None   # carried across training batches (truncated BPTT); each process carries its own
        self.device = next(model.parameters()).device
        self.replica = distributed.wrap(model)

    def _forward(self, model: nn.Module, batch: TokenBatch, state):
        """The loss summed over the batch's scored positions, their number, the logits (None with
        ``score_targets``) and the state to carry."""
        if self.score_targets:
            nll, state = model(batch.inputs, state, batch.reset, targets=batch.targets)
            loss, count, logits = nll[batch.mask].sum(), batch.mask.sum(), None
        else:
            logits, state = model(batch.inputs, state, batch.reset)
            loss, count = token_loss(logits, batch)
        return loss, count, logits, (detach_state(state) if self.carry_state else None)

    def train_step(self, step: int) -> dict[str, float]:
        self.replica.train()
        batches = [_to(self.train.next(), self.device) for _ in range(self.config.accumulate)]
        total = int(distributed.all_sum(sum(int(b.mask.sum()) for b in batches)))
        # The step's loss is the mean over the N scored tokens of its batches in all W processes,
        # L = Σ_r S_r / N with S_r the loss summed over the tokens of process r. DDP averages the processes'
        # gradients, so process r backpropagates W·S_r / N: (1/W) Σ_r ∇(W·S_r / N) = ∇L. Its accumulated batches
        # add their parts of S_r in .grad. (One process: W = 1, the mean over its own tokens.)
        processes = distributed.world_size()
        self.optimiser.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for i, batch in enumerate(batches):
            # DDP averages over the processes in the last batch's backward pass; the ones before only add to .grad
            syncs = i == len(batches) - 1 or self.replica is self.model
            with nullcontext() if syncs else self.replica.no_sync():
                loss, _, _, self.state = self._forward(self.replica, batch, self.state)
                (loss * processes / total).backward()
            loss_sum += loss.item()
        metrics = {"loss": distributed.all_sum(loss_sum) / total, "lr": self.optimiser.param_groups[0]["lr"]}
        if self.config.clip is not None:
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
            metrics["grad_norm"] = norm.item()
        self.optimiser.step()
        self.schedule.step()
        return {**metrics, "tokens": total}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()   # dropout off
        out = {}
        for split, batches in self.evaluation.items():
            sums: dict[str, list[float]] = {"loss": [0.0, 0.0]}
            state = None
            for batch in batches:
                batch = _to(batch, self.device)
                loss, count, logits, state = self._forward(self.model, batch, state)
                sums["loss"][0] += loss.item()
                sums["loss"][1] += count.item()
                for name, (total, n) in (self.metrics(logits, batch) if self.metrics else {}).items():
                    acc = sums.setdefault(name, [0.0, 0.0])
                    acc[0] += float(total)
                    acc[1] += float(n)
            out.update({f"{split}_{name}": total / max(n, 1) for name, (total, n) in sums.items()})
        self.model.train()
        return out

    def state_dict(self) -> dict:
        """Everything a resumed run needs. The model's weights are the model's own (no DDP "module." prefix), so
        they load in any number of processes. Under torchrun every process must call this: the state carried
        (``carry_state``) differs per process and is gathered as ``states``, in rank order; the rest is the same
        in every process (the stream's position included: each reads the same positions of its own columns)."""
        out = {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
               "schedule": self.schedule.state_dict(), "train": self.train.state_dict()}
        if self.carry_state and distributed.world_size() > 1:
            out["states"] = distributed.gather(_to(self.state, torch.device("cpu")))
        else:
            out["state"] = self.state
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; a carried state restores only under as many processes as wrote it."""
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.schedule.load_state_dict(state["schedule"])
        self.train.load_state_dict(state["train"])
        states = state["states"] if "states" in state else [state["state"]]
        if all(s is None for s in states):
            self.state = None
            return
        if len(states) != distributed.world_size():
            raise ValueError(f"the state carried across batches was saved by {len(states)} process(es), one per "
                             f"share of the columns; it restores only under {len(states)}, not "
                             f"{distributed.world_size()}")
        self.state = _to(states[distributed.rank()], self.device)
