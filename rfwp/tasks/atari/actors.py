"""IMPALA's actors (Espeholt et al. 2018, Sec. 3), as the authors ran them with torchbeast (RFWP Sec. 4.4): each
plays its environments with a copy of the agent and hands the learner unrolls of T steps.

    actor = Actor(config, num_envs=32, seed=0)
    unroll = actor.unroll(agent.state_dict(), version=0)   # T steps of 32 environments, see ``Unroll``

The actor carries the core state of each environment from unroll to unroll (the agent zeroes it where an episode
starts) and ships the state it had at an unroll's first frame, so that the learner reruns the unroll from where
the actor was. Actions are sampled from the agent's policy.

Design (``ActorPool``). The actors play rounds, one unroll of every environment each; the learner learns from
them ``batch_size`` unrolls at a time, first in first out. As soon as a round arrives the next one is asked for,
with the learner's weights of that moment, and played while the learner learns: one round is always in flight.
With as many environments as unrolls per batch (every preset but the paper's) each batch after the first was
played with the weights of one update before: policy lag K = 1. In general a round arrives at most
⌈envs / batch_size⌉ updates after it was asked for, and its last unroll is learnt from at the latest when the round
after it arrives: no batch is more than K = 2⌈envs / batch_size⌉ updates old (the paper's 48 environments in
batches of 32: 3 at most in the test, bound 4).
IMPALA's actors run freely and their lag is what the queue makes it; here it is bounded, and each learner update
reports the lag of its batch. Two kinds of pool, the same ``Actor`` in both:

- ``LocalActors``: one ``Actor`` with all the environments in a thread of the learner's process. ale-py steps the
  games in C++ threads and torch releases the interpreter lock in its kernels, so the actor's inference and the
  emulators overlap the learner's update, with no copy of the frames between processes. On CPUs give torch one
  thread (OMP_NUM_THREADS=1): the actor and the learner then take a core each, their times being of a size.
- ``RayActors``: ``n`` Ray actors (``ray.remote(Actor)``), each with an equal share of the environments, on this
  machine or on a cluster (``ray.init(address=...)``); ray is imported only there. A round waits for its slowest
  actor, the price of the bounded lag.
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from rfwp.tasks.atari.agent import CORE_INPUT, AtariAgent
from rfwp.tasks.atari.environment import AtariEnvironments


class Unroll(NamedTuple):
    """T steps of B environments, time-major as in torchbeast: entry t is observation x_t and what the actor did
    there. x_0 is the last observation of the environment's previous unroll, so unrolls overlap by one entry."""
    frame: Tensor               # uint8 (T+1, B, 4, 84, 84): x_0 … x_T
    reward: Tensor              # (T+1, B) clipped reward of the step that led to x_t (the agent's input)
    done: Tensor                # bool (T+1, B): x_t is the first observation of an episode (the agent's ``done``)
    action: Tensor              # int64 (T, B): a_t, taken at x_t
    behaviour_log_prob: Tensor  # (T, B): log μ(a_t | x_t), the actor's policy
    score: Tensor               # (T, B): the game's unclipped score where step t ended a game, NaN elsewhere
    version: Tensor             # int64 (B,): how many learner updates the weights that played it had had
    initial_state: Any          # the core's state before x_0, as the agent takes it (None for the feed-forward core)


def state_batch_dim(core: str) -> int:
    """The batch dimension of the core's state tensors: nn.LSTM's (layers, B, H) or the fast weight models' (B, ...)."""
    return 1 if core == "lstm" else 0


def map_state(fn, state):
    """``fn`` applied to every tensor of a nested state (tuples, named tuples, lists, None)."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(fn, s) for s in state)
    return state


def cat_states(states: list, dim: int):
    """The states of several batches of environments as one state: their tensors concatenated along ``dim``."""
    first = states[0]
    if isinstance(first, Tensor):
        return torch.cat(states, dim)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(cat_states(list(parts), dim) for parts in zip(*states)))
    if isinstance(first, (list, tuple)):
        return type(first)(cat_states(list(parts), dim) for parts in zip(*states))
    return first


def zero_state(agent: AtariAgent, batch: int):
    """The core's zero state for ``batch`` environments, as tensors (what the agent reads None as): the state of
    one step from None, zeroed. Actors ship tensors, so that the learner can concatenate any actors' states."""
    with torch.no_grad():
        done = torch.ones(1, batch, dtype=torch.bool)
        _, _, state = agent.policy_and_baseline(torch.zeros(1, batch, CORE_INPUT), done)
    return map_state(torch.zeros_like, state)


def split_unroll(unroll: Unroll, dim: int) -> list[Unroll]:
    """One unroll per environment (views, no copy); ``dim``: the state's batch dimension."""
    return [Unroll(*(field[:, b:b + 1] for field in unroll[:6]), unroll.version[b:b + 1],
                   map_state(lambda s: s.narrow(dim, b, 1), unroll.initial_state))
            for b in range(unroll.version.shape[0])]


def cat_unrolls(unrolls: list[Unroll], dim: int) -> Unroll:
    """One unroll of all the environments of ``unrolls``; ``dim``: the state's batch dimension."""
    fields = [torch.cat(parts, 1) for parts in list(zip(*unrolls))[:6]]
    return Unroll(*fields, torch.cat([u.version for u in unrolls]), cat_states([u.initial_state for u in unrolls], dim))


def env_seed(*keys: int) -> int:
    """A seed for a batch of environments from (run seed, restart, actor, ...): ale-py seeds the environments of a
    batch with seed, seed + 1, …, so batches get seeds from a SeedSequence, far apart, below 2^31."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0]) % (2**31 - 2**20)


def action_count(game: str) -> int:
    """The size of the game's minimal action set (raises ValueError for an unknown game)."""
    with AtariEnvironments(game, 1) as envs:
        return envs.num_actions


class Actor:
    """Plays ``num_envs`` environments of ``config.game`` with the agent of ``config`` (an ``AtariConfig``),
    sampling its actions, ``config.unroll_length`` steps per ``unroll``. ``seed`` seeds the environments and the
    action sampling. The same class runs in the learner's process and as a Ray actor."""

    def __init__(self, config, num_envs: int, seed: int):
        self.config = config
        self.envs = AtariEnvironments(config.game, num_envs, seed=seed,
                                      max_episode_frames=config.max_episode_frames)
        if config.num_actions > self.envs.num_actions:
            self.envs.close()
            raise ValueError(f"num_actions is {config.num_actions}, but {config.game}'s minimal action set has "
                             f"{self.envs.num_actions} actions")
        self.agent = AtariAgent(config.num_actions, config.core, encoder=config.encoder,
                                config=config.model_config, bptt=config.bptt).eval()
        self.generator = torch.Generator().manual_seed(seed)
        self.last = self.envs.reset()   # x_0 of the next unroll: a reset, done everywhere
        self.state = zero_state(self.agent, num_envs)

    def unroll(self, weights: dict[str, Tensor], version: int) -> Unroll:
        """The next ``unroll_length`` steps of every environment, played with ``weights`` (the learner's after
        ``version`` updates)."""
        self.agent.load_state_dict(weights)
        step, initial_state = self.last, self.state
        frames, rewards, dones = [step.frame], [step.reward], [step.done]
        actions, log_probs, scores = [], [], []
        with torch.no_grad():
            for _ in range(self.config.unroll_length):
                logits, _, self.state = self.agent(step.frame[None], step.reward[None], step.done[None], self.state)
                log_policy = F.log_softmax(logits[0], dim=-1)
                action = torch.multinomial(log_policy.exp(), 1, generator=self.generator)
                log_probs.append(log_policy.gather(1, action).squeeze(1))
                actions.append(action.squeeze(1))
                step = self.envs.step(actions[-1])
                frames.append(step.frame)
                rewards.append(step.reward)
                dones.append(step.done)
                scores.append(torch.where(step.episode_end, step.episode_return, torch.nan))
        self.last = step
        return Unroll(torch.stack(frames), torch.stack(rewards), torch.stack(dones), torch.stack(actions),
                      torch.stack(log_probs), torch.stack(scores), torch.full((self.envs.num_envs,), version),
                      initial_state)

    def close(self) -> None:
        self.envs.close()


class ActorPool:
    """Rounds of unrolls from ``_submit``/``_collect`` (a subclass's), served ``batch_size`` at a time with one
    round in flight (see the module docstring). ``envs``: environments over all actors; ``core``: the agent's."""

    def __init__(self, envs: int, batch_size: int, core: str):
        self.envs, self.batch_size, self.dim = envs, batch_size, state_batch_dim(core)
        self.buffer: deque[Unroll] = deque()   # single-environment unrolls, oldest first
        self.in_flight = False

    @property
    def max_policy_lag(self) -> int:
        """K: the most updates a batch's weights can be behind the learner's (module docstring)."""
        return 1 if self.envs == self.batch_size else 2 * math.ceil(self.envs / self.batch_size)

    def batch(self, weights: dict[str, Tensor], version: int) -> Unroll:
        """The next ``batch_size`` unrolls, as one; ``weights`` (after ``version`` updates) play the next round
        if one is asked for now."""
        if not self.in_flight:
            self._start(weights, version)
        while len(self.buffer) < self.batch_size:
            for unroll in self._collect():
                self.buffer.extend(split_unroll(unroll, self.dim))
            self.in_flight = False
            self._start(weights, version)
        return cat_unrolls([self.buffer.popleft() for _ in range(self.batch_size)], self.dim)

    def _start(self, weights: dict[str, Tensor], version: int) -> None:
        # a copy: the learner changes its parameters in place while the round is played
        self._submit({k: v.detach().clone() for k, v in weights.items()}, version)
        self.in_flight = True

    def _submit(self, weights: dict[str, Tensor], version: int) -> None:
        raise NotImplementedError

    def _collect(self) -> list[Unroll]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class LocalActors(ActorPool):
    """One ``Actor`` with all ``config.envs`` environments, playing its rounds in a thread of this process."""

    def __init__(self, config, seed: int):
        super().__init__(config.envs, config.batch_size, config.core)
        self.actor = Actor(config, config.envs, seed)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="atari-actor")

    def _submit(self, weights, version):
        self.future = self.thread.submit(self.actor.unroll, weights, version)

    def _collect(self):
        return [self.future.result()]

    def close(self):
        self.thread.shutdown(cancel_futures=True)
        self.actor.close()


class RayActors(ActorPool):
    """``config.actors`` Ray actors, each an ``Actor`` with its share of ``config.envs`` environments, every one
    asked for an unroll per round. Joins the running Ray instance, or starts one with ``ray.init(address=address)``
    (None: a local one; "auto" or "ray://host:port": a cluster). ``seeds``: one per actor. ``cpus_per_actor``:
    the CPUs Ray reserves for each."""

    def __init__(self, config, seeds: list[int], address: str | None = None, cpus_per_actor: float = 1.0):
        import ray

        super().__init__(config.envs, config.batch_size, config.core)
        if not ray.is_initialized():
            ray.init(address=address)
        self.ray = ray
        remote = ray.remote(num_cpus=cpus_per_actor)(Actor)
        self.actors = [remote.remote(config, config.envs // config.actors, seed) for seed in seeds]

    def _submit(self, weights, version):
        reference = self.ray.put(weights)   # once, read by every actor
        self.futures = [actor.unroll.remote(reference, version) for actor in self.actors]

    def _collect(self):
        return self.ray.get(self.futures)

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)
