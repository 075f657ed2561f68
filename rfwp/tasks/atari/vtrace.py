"""V-trace targets and the IMPALA actor-critic loss (Espeholt et al. 2018, Sec. 4), as the authors train their
Atari agents with torchbeast (RFWP Sec. 4.4, App. C).

Rollouts are (time, batch) as in torchbeast: entry t of a rollout of length T is the step that took action
a_t in state x_t and got reward r_t, discounts[t] = γ·(1 − done_t) with done_t that this step ended the
episode, and the bootstrap value V(x_T) is that of the state after the last step.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

BASELINE_COST = 0.5   # torchbeast's --baseline_cost
ENTROPY_COST = 0.01   # App. C: "entropy regularisation with a weight of 0.01"


class VTraceReturns(NamedTuple):
    vs: Tensor             # (T, B) v_s, the value targets (Espeholt et al. Eq. 1)
    pg_advantages: Tensor  # (T, B) ρ_s (r_s + γ_s v_{s+1} − V(x_s)), the policy gradient's advantages (Sec. 4.2)


@torch.no_grad()
def vtrace(behaviour_log_probs: Tensor, target_log_probs: Tensor, discounts: Tensor, rewards: Tensor,
           values: Tensor, bootstrap_value: Tensor, rho_bar: float = 1.0, c_bar: float = 1.0) -> VTraceReturns:
    """V-trace targets from (T, B) log-probabilities of the taken actions under the behaviour policy μ (the
    actors') and the target policy π (the learner's), discounts γ·(1 − done), rewards and values V(x_s), and
    the (B,) bootstrap value V(x_T). ρ̄ and c̄ truncate the importance ratios π/μ (both 1 in the paper; the
    policy gradient's ρ is truncated at ρ̄ too, as in torchbeast). The targets are constants: no gradient."""
    ratios = torch.exp(target_log_probs - behaviour_log_probs)
    rhos = ratios.clamp(max=rho_bar)
    cs = ratios.clamp(max=c_bar)
    next_values = torch.cat([values[1:], bootstrap_value[None]])
    # δ_s V = ρ_s (r_s + γ V(x_{s+1}) − V(x_s))
    deltas = rhos * (rewards + discounts * next_values - values)
    # Remark 1: v_s − V(x_s) = δ_s V + γ c_s (v_{s+1} − V(x_{s+1})), backwards from v_T − V(x_T) = 0
    correction = torch.zeros_like(bootstrap_value)
    corrections = []
    for s in reversed(range(values.shape[0])):
        correction = deltas[s] + discounts[s] * cs[s] * correction
        corrections.append(correction)
    vs = torch.stack(corrections[::-1]) + values
    next_vs = torch.cat([vs[1:], bootstrap_value[None]])
    return VTraceReturns(vs, rhos * (rewards + discounts * next_vs - values))


class ImpalaLoss(NamedTuple):
    total: Tensor            # policy_gradient + BASELINE_COST · baseline + ENTROPY_COST · entropy
    policy_gradient: Tensor  # −Σ log π(a_s|x_s) · advantage_s
    baseline: Tensor         # ½ Σ (v_s − V(x_s))²
    entropy: Tensor          # Σ π log π, the negative entropy (minimising it raises the entropy)


def impala_loss(logits: Tensor, actions: Tensor, behaviour_log_probs: Tensor, discounts: Tensor, rewards: Tensor,
                values: Tensor, bootstrap_value: Tensor, baseline_cost: float = BASELINE_COST,
                entropy_cost: float = ENTROPY_COST) -> ImpalaLoss:
    """IMPALA's loss (Espeholt et al. Sec. 4.2) from the learner's policy logits (T, B, A) and values (T, B),
    the taken actions (T, B), their log-probabilities under the actors' policy (T, B), discounts and rewards
    (T, B, rewards already clipped) and the bootstrap value (B,), with V-trace targets (ρ̄ = c̄ = 1).

    Every term is a sum over time and batch, as in torchbeast, not a mean: the paper's learning rate (6e-4,
    App. C) is for these sums over 50 steps × 32 rollouts. The gradient reaches the logits and the values
    (not the bootstrap value, which only enters the constant targets)."""
    log_policy = F.log_softmax(logits, dim=-1)
    target_log_probs = log_policy.gather(-1, actions[..., None]).squeeze(-1)
    returns = vtrace(behaviour_log_probs, target_log_probs, discounts, rewards, values, bootstrap_value)
    policy_gradient = -(target_log_probs * returns.pg_advantages).sum()
    baseline = 0.5 * ((returns.vs - values) ** 2).sum()
    entropy = (log_policy.exp() * log_policy).sum()
    total = policy_gradient + baseline_cost * baseline + entropy_cost * entropy
    return ImpalaLoss(total, policy_gradient, baseline, entropy)
