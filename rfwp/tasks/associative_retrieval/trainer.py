"""One run of the task through ``rfwp.train.execute``: Adam on fresh random batches (Sec. 6.1)."""
from __future__ import annotations

import dataclasses

import torch

from rfwp.tasks.associative_retrieval.config import RetrievalConfig, config_for
from rfwp.tasks.associative_retrieval.data import evaluation_batch, training_batch
from rfwp.tasks.associative_retrieval.model import RetrievalModel, retrieval_loss
from rfwp.tasks.associative_retrieval.presets import preset
from rfwp.train import Schedule, execute


class RetrievalTrainer:
    """Adam on fresh random batches; evaluation on a fixed set of ``eval_sequences`` sequences.
    The data come from a torch.Generator of the trainer's own, so a run resumes bit for bit."""

    def __init__(self, config: RetrievalConfig, seed: int):
        self.config = config
        self.model = RetrievalModel(config)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.data = torch.Generator().manual_seed(seed)
        # the evaluation sequences: a stream of their own, drawn once and fixed for the run
        self.eval_batch = evaluation_batch(config.setting, config.S, config.eval_sequences,
                                           torch.Generator().manual_seed(seed + 1_000_003))

    def train_step(self, step: int) -> dict[str, float]:
        batch = training_batch(self.config.setting, self.config.S, self.config.batch_size, self.data)
        loss, accuracy = retrieval_loss(self.model(batch.keys, batch.values, batch.queries), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        batch = self.eval_batch
        loss, accuracy = retrieval_loss(self.model(batch.keys, batch.values, batch.queries), batch)
        self.model.train()
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "data": self.data.get_state(), "torch": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data.set_state(state["data"])
        torch.set_rng_state(state["torch"])  # FAVOR+ redraws its features from the global RNG


def schedule(max_steps: int) -> Schedule:
    """Sec. 6.1.1: evaluate every 100 steps, stop at loss ≤ 0.001 or after 1000 steps (10 evaluations)
    without progress, and at ``max_steps`` at most (100k in the authors' code)."""
    return Schedule(steps=max_steps, eval_every=100, monitor="loss", mode="min", patience=10, target=0.001)


def run(variant: str, S: int, setting: str, scale: str, seed: int, lr: float | None = None,
        steps: int | None = None, **execute_kwargs):
    """One run through ``rfwp.train.execute`` (``execute_kwargs``: results_dir, cache_dir, progress), named
    e.g. "background/capacity/sum_dpfp2/S100"; ``lr`` and ``steps`` replace the paper's learning rate and the
    scale's step limit (the run is then named ".../S100/lr0.0003-steps6000")."""
    config = config_for(variant, S, setting)
    name = f"background/{setting}/{variant}/S{S}"
    if lr is not None or steps is not None:
        config = dataclasses.replace(config, lr=lr if lr is not None else config.lr)
        name += f"/lr{config.lr:g}-steps{steps or preset(scale).max_steps}"
    return execute(name, config, RetrievalTrainer, schedule(steps or preset(scale).max_steps), seed=seed,
                   scale=scale, **execute_kwargs)
