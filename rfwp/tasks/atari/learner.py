"""IMPALA's learner (Espeholt et al. 2018, Sec. 4), with the authors' torchbeast settings (RFWP App. C): one
update from a batch of unrolls.

    optimiser = rmsprop(agent)
    metrics = update(agent, optimiser, batch, lr=learning_rate(6e-4, frames_done, budget))

The agent reruns each unroll from the core state the actor had at its first frame (the state is zeroed at done
steps inside the agent), with backpropagation through time within the unroll when ``agent.bptt`` and none across
unrolls: the shipped state carries no gradient. Its outputs at x_0 … x_{T−1} give the policy and values of the
steps, its baseline at x_T the bootstrap value; the loss is V-trace's (``vtrace.impala_loss``) on the clipped
rewards, with RMSprop and the gradient norm clipped at 40.
"""
from __future__ import annotations

import torch

from rfwp.tasks.atari.actors import Unroll
from rfwp.tasks.atari.agent import AtariAgent
from rfwp.tasks.atari.vtrace import BASELINE_COST, ENTROPY_COST, impala_loss

# App. C, and the authors' README for α, momentum and γ (original-code.md §5)
LEARNING_RATE = 6e-4
ALPHA = 0.99           # RMSprop's smoothing constant
EPSILON = 0.01         # added to the root of the mean square, as in torch's RMSprop (which torchbeast uses)
MOMENTUM = 0.0
GRAD_NORM_CLIP = 40.0
DISCOUNT = 0.99        # γ


def rmsprop(agent: AtariAgent, lr: float = LEARNING_RATE, alpha: float = ALPHA, eps: float = EPSILON,
            momentum: float = MOMENTUM) -> torch.optim.RMSprop:
    return torch.optim.RMSprop(agent.parameters(), lr=lr, alpha=alpha, eps=eps, momentum=momentum)


def learning_rate(lr: float, frames_done: int, frames: int) -> float:
    """The rate of the next update: ``lr`` decayed linearly to 0 over the budget of ``frames`` environment steps,
    lr · (1 − frames_done / frames), as torchbeast's LambdaLR; 0 once the budget is spent."""
    return lr * max(0.0, 1.0 - frames_done / frames)


def update(agent: AtariAgent, optimiser: torch.optim.Optimizer, batch: Unroll, *, lr: float,
           discount: float = DISCOUNT, clip: float = GRAD_NORM_CLIP, baseline_cost: float = BASELINE_COST,
           entropy_cost: float = ENTROPY_COST) -> dict[str, float]:
    """One optimiser step on ``batch`` (an ``Unroll`` of T steps of B environments) at learning rate ``lr``.
    Returns the loss and its terms (sums over the batch's T·B steps, as torchbeast's), the gradient norm before
    clipping and the learning rate."""
    agent.train()
    logits, baseline, _ = agent(batch.frame, batch.reward, batch.done, batch.initial_state)
    # step t: a_t at x_t, reward r_t and done_{t+1} on arriving at x_{t+1}; discount γ·(1 − done_{t+1})
    discounts = discount * (~batch.done[1:]).float()
    loss = impala_loss(logits[:-1], batch.action, batch.behaviour_log_prob, discounts, batch.reward[1:],
                       baseline[:-1], baseline[-1], baseline_cost, entropy_cost)
    optimiser.zero_grad()
    loss.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(agent.parameters(), clip)
    for group in optimiser.param_groups:
        group["lr"] = lr
    optimiser.step()
    return {"loss": loss.total.item(), "policy_gradient_loss": loss.policy_gradient.item(),
            "baseline_loss": loss.baseline.item(), "entropy_loss": loss.entropy.item(),
            "grad_norm": grad_norm.item(), "lr": lr}
