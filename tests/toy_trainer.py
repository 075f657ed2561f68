"""A tiny trainer for the run tests: linear regression y = x·w* + noise, fitted by SGD on batches from its own generator."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class ToyConfig:
    d: int = 4
    batch: int = 8
    lr: float = 0.05
    sleep: float = 0.0   # seconds per step, so a test can kill the run mid-training


class ToyTrainer:
    calls = 0   # train_step calls in this process, summed over instances

    def __init__(self, config: ToyConfig, seed: int):
        self.config = config
        self.data = torch.Generator().manual_seed(seed)
        self.w_true = torch.randn(config.d, 1, generator=self.data)
        self.model = torch.nn.Linear(config.d, 1)   # initialised from the global RNG that execute seeds
        self.optimiser = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=0.9)
        eval_gen = torch.Generator().manual_seed(10_000 + seed)
        self.x_eval = torch.randn(64, config.d, generator=eval_gen)
        self.y_eval = self.x_eval @ self.w_true

    def train_step(self, step: int) -> dict[str, float]:
        ToyTrainer.calls += 1
        time.sleep(self.config.sleep)
        x = torch.randn(self.config.batch, self.config.d, generator=self.data)
        # Noise from the global RNG, so a resume that forgot to restore it would give different numbers.
        y = x @ self.w_true + 0.1 * torch.randn(self.config.batch, 1)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        return {"loss": loss.item()}

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(self.model(self.x_eval), self.y_eval).item()
        return {"loss": loss, "neg_loss": -loss}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "data": self.data.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.data.set_state(state["data"])
