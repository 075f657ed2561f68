"""The paper's test protocol (RFWP Sec. 4.4, Tables 7 and 8): the trained agent plays 30 test episodes, 5 times;
the score is the mean over the 5 repetitions of their mean score, ± the standard deviation of those 5 means.

    result = evaluate_policy("pong", greedy(agent), episodes=30, repetitions=5, seed=0)
    result.mean, result.std, result.scores        # scores: (5, 30) unclipped game scores
    baseline = random_baseline("pong", num_actions=6)   # the same protocol for a uniformly random policy

Choices, where the paper leaves them open:
- The agent acts greedily (the argmax of its policy), the authors' test mode (original-code.md §5), or plays its
  policy's samples (``sampled``), the policy it was trained with: ``TEST_POLICIES``, chosen per scale (presets.py).
- Scores are true game scores: unclipped, summed over all the lives of a game. As in training (and in torchbeast's
  test, whose environment has the same wrappers) a lost life is a ``done`` for the agent, which zeroes its core
  state; the game goes on.
- No time limit (App. C), but a safety cap of ``max_steps`` agent steps: a game still running then is scored by
  its score so far and counted in ``capped`` (a greedy agent may never press FIRE again).
- All episodes × repetitions games play at once in one batch, each environment exactly one game, from its own
  no-op start (seeds seed, seed + 1, …): no game is preferred for ending early.
- The standard deviation is the sample one (n − 1) of the repetition means; NaN with one repetition.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from rfwp.tasks.atari.agent import AtariAgent
from rfwp.tasks.atari.environment import NO_FRAME_LIMIT, AtariEnvironments, AtariStep

# policy(step, state) → actions (num_envs,), state
Policy = Callable[[AtariStep, object], tuple[Tensor, object]]
TEST_POLICIES = ("greedy", "sampled")


class PolicyScores(NamedTuple):
    scores: Tensor  # (repetitions, episodes) unclipped game scores
    mean: float     # mean over repetitions of the per-repetition mean score
    std: float      # sample standard deviation of the per-repetition mean scores
    capped: int     # games stopped by the safety cap (scored by their score so far)


def greedy(agent: AtariAgent) -> Policy:
    """The agent's argmax action at each step, its core state carried (zeroed by ``done``)."""
    def act(step: AtariStep, state):
        logits, _, state = agent(step.frame[None], step.reward[None], step.done[None], state)
        return logits[0].argmax(-1), state
    return act


def sampled(agent: AtariAgent, generator: torch.Generator) -> Policy:
    """Actions sampled from the agent's policy."""
    def act(step: AtariStep, state):
        logits, _, state = agent(step.frame[None], step.reward[None], step.done[None], state)
        return torch.multinomial(logits[0].softmax(-1), 1, generator=generator).squeeze(1), state
    return act


def check_test_policy(name: str) -> None:
    if name not in TEST_POLICIES:
        raise ValueError(f"unknown test policy {name!r}; choose one of {TEST_POLICIES}")


def test_policy(name: str, agent: AtariAgent, seed: int) -> Policy:
    """The trained agent's test policy ``name`` (one of ``TEST_POLICIES``); ``seed`` seeds the samples."""
    check_test_policy(name)
    return greedy(agent) if name == "greedy" else sampled(agent, torch.Generator().manual_seed(seed))


def test_key(name: str, headline: str) -> str:
    """The prefix of a test's record keys: ``test`` (``test_score``, ...) for the scale's ``headline`` policy,
    ``test_<name>`` (``test_greedy_score``, ...) for the other."""
    return "test" if name == headline else f"test_{name}"


def uniform_random(num_actions: int, generator: torch.Generator) -> Policy:
    """Every action of the first ``num_actions`` equally likely, at every step."""
    def act(step: AtariStep, state):
        return torch.randint(num_actions, step.done.shape, generator=generator), state
    return act


@torch.no_grad()
def evaluate_policy(game: str, policy: Policy, *, episodes: int = 30, repetitions: int = 5, seed: int = 0,
                    max_steps: int = 250_000) -> PolicyScores:
    """``repetitions`` × ``episodes`` games of ``game`` played by ``policy`` (see the module docstring)."""
    n = episodes * repetitions
    scores = torch.full((n,), torch.nan)
    with AtariEnvironments(game, n, seed=seed, max_episode_frames=NO_FRAME_LIMIT) as envs:
        step, state = envs.reset(), None
        for _ in range(max_steps):
            actions, state = policy(step, state)
            step = envs.step(actions)
            ended = step.episode_end & scores.isnan()
            scores[ended] = step.episode_return[ended]
            if not scores.isnan().any():
                break
        capped = scores.isnan()
        scores[capped] = step.episode_return[capped]
    means = scores.view(repetitions, episodes).mean(1)
    std = means.std().item() if repetitions > 1 else float("nan")
    return PolicyScores(scores.view(repetitions, episodes), means.mean().item(), std, int(capped.sum()))


def random_baseline(game: str, num_actions: int, *, episodes: int = 30, repetitions: int = 5, seed: int = 0,
                    max_steps: int = 250_000) -> PolicyScores:
    """``evaluate_policy`` of the uniformly random policy over the first ``num_actions`` actions of the game's
    minimal set (the trained agents' action space): the score an agent must beat to have learnt anything."""
    generator = torch.Generator().manual_seed(seed)
    return evaluate_policy(game, uniform_random(num_actions, generator), episodes=episodes,
                           repetitions=repetitions, seed=seed, max_steps=max_steps)
