"""V-trace targets against TorchRL's ``vtrace_advantage_estimate`` and, on-policy, against n-step returns; the
IMPALA loss's terms by their definitions."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from rfwp.tasks.atari.vtrace import impala_loss, vtrace

T, B, A, GAMMA = 9, 6, 5, 0.99


def rollout(seed: int, same_policy: bool = False) -> dict[str, torch.Tensor]:
    """Random (time, batch) inputs with episode ends inside; ratios π/μ both below and above 1."""
    g = torch.Generator().manual_seed(seed)
    done = torch.rand(T, B, generator=g) < 0.2
    done[3, 0] = True
    behaviour = -torch.rand(T, B, generator=g) * 2
    target = behaviour if same_policy else behaviour + torch.randn(T, B, generator=g)
    return dict(behaviour_log_probs=behaviour.double(), target_log_probs=target.double(),
                discounts=GAMMA * (~done).double(), rewards=torch.randn(T, B, generator=g).double(),
                values=torch.randn(T, B, generator=g).double(), bootstrap_value=torch.randn(B, generator=g).double(),
                done=done)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vtrace_matches_torchrl(seed):
    r = rollout(seed)
    ours = vtrace(r["behaviour_log_probs"], r["target_log_probs"], r["discounts"], r["rewards"], r["values"],
                  r["bootstrap_value"])
    # TorchRL: (batch, time, 1), the next states' values given, log_pi the target policy's, log_mu the actors'
    next_values = torch.cat([r["values"][1:], r["bootstrap_value"][None]])
    log_pi, log_mu, values, next_values, rewards, done = (
        x.T[..., None] for x in (r["target_log_probs"], r["behaviour_log_probs"], r["values"], next_values,
                                 r["rewards"], r["done"]))
    advantages, vs = vtrace_advantage_estimate(GAMMA, log_pi, log_mu, values, next_values, rewards, done,
                                               rho_thresh=1.0, c_thresh=1.0, time_dim=-2)
    torch.testing.assert_close(ours.vs, vs[..., 0].T)
    torch.testing.assert_close(ours.pg_advantages, advantages[..., 0].T)


@pytest.mark.parametrize("bars", [1.0, float("inf")])
def test_on_policy_vs_is_the_n_step_return(bars):
    """With π = μ every ratio is 1 and v_s is the discounted return to the end of the rollout, bootstrapped
    with V(x_T) unless the episode ends before: Σ_{t≥s} (Π_{s≤i<t} γ_i) r_t + (Π_{s≤i<T} γ_i) V(x_T)."""
    r = rollout(3, same_policy=True)
    returns = vtrace(r["behaviour_log_probs"], r["target_log_probs"], r["discounts"], r["rewards"], r["values"],
                     r["bootstrap_value"], rho_bar=bars, c_bar=bars)
    expected = torch.zeros(T, B, dtype=torch.float64)
    for s in range(T):
        discount = torch.ones(B, dtype=torch.float64)
        for t in range(s, T):
            expected[s] += discount * r["rewards"][t]
            discount = discount * r["discounts"][t]
        expected[s] += discount * r["bootstrap_value"]
    torch.testing.assert_close(returns.vs, expected)
    torch.testing.assert_close(returns.vs[3, 0], r["rewards"][3, 0])  # episode end at step 3: no bootstrapping


def test_impala_loss_terms_and_gradients():
    r = rollout(4)
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(T, B, A, generator=g, dtype=torch.float64, requires_grad=True)
    values = r["values"].clone().requires_grad_()
    actions = torch.randint(A, (T, B), generator=g)
    loss = impala_loss(logits, actions, r["behaviour_log_probs"], r["discounts"], r["rewards"], values,
                       r["bootstrap_value"])
    log_pi = F.log_softmax(logits, -1)
    taken = log_pi.gather(-1, actions[..., None])[..., 0]
    targets = vtrace(r["behaviour_log_probs"], taken, r["discounts"], r["rewards"], values, r["bootstrap_value"])
    torch.testing.assert_close(loss.policy_gradient, -(taken * targets.pg_advantages).sum())
    torch.testing.assert_close(loss.baseline, 0.5 * ((targets.vs - values) ** 2).sum())
    torch.testing.assert_close(loss.entropy, -torch.distributions.Categorical(logits=logits).entropy().sum())
    torch.testing.assert_close(loss.total, loss.policy_gradient + 0.5 * loss.baseline + 0.01 * loss.entropy)
    loss.total.backward()
    # the targets are constants: the values' gradient is the baseline term's alone, 0.5 · (V − v_s)
    torch.testing.assert_close(values.grad, 0.5 * (values - targets.vs).detach())
    assert logits.grad is not None and logits.grad.abs().sum() > 0
