"""Atari training (rfwp.tasks.atari.{actors,learner,trainer,evaluation}): the actor/learner hand-off, the pool's
batches and policy lag, a run through execute() and its resumption, the Ray actors, the learning-rate schedule,
the test protocol and bad input. Pong (or Breakout) with the shallow encoder, a few hundred agent steps a test."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from oracle import Crash, crashing
from rfwp.tasks.atari import evaluation
from rfwp.tasks.atari.actors import (Actor, ActorPool, RayActors, Unroll, cat_unrolls, map_state, split_unroll,
                                     state_batch_dim, zero_state)
from rfwp.tasks.atari.agent import AtariAgent
from rfwp.tasks.atari.learner import learning_rate, update
from rfwp.tasks.atari.trainer import AtariConfig, AtariTrainer, config
from rfwp.train import Schedule, execute

T = 5


def tiny(core: str = "lstm", **fields) -> AtariConfig:
    """2 environments of Pong, unrolls of 5 steps, batches of 2: 10 frames an update; a test of 2 × 1 games of at
    most 10 steps."""
    return AtariConfig(**{"game": "pong", "core": core, "num_actions": 6, "frames": 40, "encoder": "shallow",
                          "envs": 2, "batch_size": 2, "unroll_length": T, "test_episodes": 1,
                          "test_repetitions": 2, "test_max_steps": 10, **fields})


def flat(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in flat(s)] if isinstance(state, (tuple, list)) else []


def log_probs_by_the_learner(agent: AtariAgent, batch: Unroll) -> torch.Tensor:
    """log π(a_t | x_t) as the learner computes it: the whole unroll from the shipped state."""
    with torch.no_grad():
        logits, _, _ = agent(batch.frame, batch.reward, batch.done, batch.initial_state)
    return F.log_softmax(logits[:-1], -1).gather(-1, batch.action[..., None]).squeeze(-1)


@pytest.mark.parametrize("core", ["lstm", "recurrent_delta_net"])
def test_actor_hands_the_learner_aligned_unrolls(core):
    """Two unrolls with a 40-frame time limit (episodes of about 10 steps). Shapes; consecutive unrolls overlap by
    x_T = x_0; done[t] is True exactly where x_t is the first frame of a game (its stack holds no earlier frame),
    and the score of the game that ended is at step t − 1; the shipped initial state is the actor's state at x_0,
    and from it the learner's agent reproduces the actor's log-probabilities over the whole unroll."""
    torch.manual_seed(0)
    cfg = tiny(core, unroll_length=8, max_episode_frames=40)
    actor = Actor(cfg, 2, seed=0)
    weights = actor.agent.state_dict()
    first, second = actor.unroll(weights, version=0), actor.unroll(weights, version=1)
    actor.close()
    assert first.frame.shape == (9, 2, 4, 84, 84) and first.frame.dtype == torch.uint8
    assert first.reward.shape == first.done.shape == (9, 2)
    assert first.action.shape == first.behaviour_log_prob.shape == first.score.shape == (8, 2)
    assert first.version.tolist() == [0, 0] and second.version.tolist() == [1, 1]
    for name in ("frame", "reward", "done"):
        assert torch.equal(getattr(second, name)[0], getattr(first, name)[-1])
    frames = torch.cat([first.frame, second.frame[1:]])
    done = torch.cat([first.done, second.done[1:]])
    score = torch.cat([first.score, second.score])
    assert done[0].all() and done[1:].any()
    starts = (frames[:, :, :3] == 0).flatten(2).all(-1)   # a new game's stack: three zero frames, then its first
    assert torch.equal(done, starts)
    assert torch.equal(done[1:], ~score.isnan())          # Pong has no lives: every done is a game's end
    with torch.no_grad():
        _, _, state = actor.agent(first.frame[:-1], first.reward[:-1], first.done[:-1], first.initial_state)
    torch.testing.assert_close(flat(second.initial_state), flat(state))
    for unroll in (first, second):
        torch.testing.assert_close(log_probs_by_the_learner(actor.agent, unroll), unroll.behaviour_log_prob,
                                   atol=1e-5, rtol=1e-5)


class Scripted(ActorPool):
    """A pool whose rounds are unrolls of ``envs`` environments marked only by their version and environment."""

    def __init__(self, envs: int, batch_size: int):
        super().__init__(envs, batch_size, "lstm")
        self.rounds = 0

    def _submit(self, weights, version):
        self.version = version

    def _collect(self):
        self.rounds += 1
        B = self.envs
        env = torch.arange(B, dtype=torch.float32).expand(T + 1, B)
        state = (env[:1, :, None].clone(), -env[:1, :, None].clone())   # nn.LSTM's (layers, B, H)
        return [Unroll(torch.zeros(T + 1, B, 4, 84, 84, dtype=torch.uint8), env,
                       torch.zeros(T + 1, B, dtype=torch.bool), torch.zeros(T, B, dtype=torch.long), torch.zeros(T, B),
                       torch.full((T, B), math.nan), torch.full((B,), self.version), state)]


@pytest.mark.parametrize("envs, batch_size", [(32, 32), (48, 32), (64, 32), (20, 32)])
def test_pool_serves_every_unroll_once_in_order_within_the_lag_bound(envs, batch_size):
    """First in first out, every environment's unroll exactly once, its state with it, and no batch older than
    max_policy_lag updates; with as many environments as the batch, every batch after the first is one update old."""
    pool = Scripted(envs, batch_size)
    served, lags = [], []
    for version in range(12):
        batch = pool.batch({}, version)
        assert batch.frame.shape[1] == batch_size
        torch.testing.assert_close(batch.initial_state[0][0, :, 0], batch.reward[0])
        torch.testing.assert_close(batch.initial_state[1][0, :, 0], -batch.reward[0])
        served += batch.reward[0].tolist()
        lags.append(version - int(batch.version.min()))
    assert served == [float(b) for b in range(envs)] * (len(served) // envs) + list(range(len(served) % envs))
    assert max(lags) <= pool.max_policy_lag
    if envs == batch_size:
        assert lags == [0] + [1] * 11 and pool.max_policy_lag == 1


def test_split_and_cat_unrolls_are_inverse():
    """One unroll per environment (the pool's buffer) and back, with the LSTM's and a fast weight core's states."""
    g = torch.Generator().manual_seed(0)
    for core in ("lstm", "delta_rnn"):
        state = map_state(lambda t: torch.randn(t.shape, generator=g) if t.is_floating_point() else t + 1,
                          zero_state(AtariAgent(3, core, encoder="shallow"), 3))
        unroll = Unroll(torch.randint(255, (T + 1, 3, 4, 84, 84), generator=g, dtype=torch.uint8),
                        torch.randn(T + 1, 3, generator=g), torch.rand(T + 1, 3, generator=g) < 0.3,
                        torch.randint(3, (T, 3), generator=g), torch.randn(T, 3, generator=g),
                        torch.randn(T, 3, generator=g), torch.arange(3), state)
        parts = split_unroll(unroll, state_batch_dim(core))
        assert len(parts) == 3 and parts[1].frame.shape[1] == 1
        whole = cat_unrolls(parts, state_batch_dim(core))
        assert all(torch.equal(a, b) for a, b in zip(whole[:7], unroll[:7]))
        assert all(torch.equal(a, b) for a, b in zip(flat(whole.initial_state), flat(unroll.initial_state)))


def test_learner_on_policy_loss_is_that_of_n_step_returns():
    """On-policy (behaviour = the learner's policy) V-trace's targets are the discounted returns bootstrapped from
    V(x_T), cut where an episode ends (Espeholt et al. Sec. 4.1): the update's baseline and policy-gradient losses
    equal ½ Σ (G_t − V(x_t))² and −Σ log π(a_t|x_t) (G_t − V(x_t)), with
    G_t = r_{t+1} + γ (1 − done_{t+1}) G_{t+1} from the rewards and dones of x_{t+1}: checks how the learner lines
    up steps, rewards, dones and the bootstrap value."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    agent = AtariAgent(6, "feedforward", encoder="shallow")
    done = torch.zeros(T + 1, 2, dtype=torch.bool)
    done[0], done[3, 0], done[1, 1] = True, True, True
    batch = Unroll(torch.randint(255, (T + 1, 2, 4, 84, 84), generator=g, dtype=torch.uint8),
                   torch.randint(-1, 2, (T + 1, 2), generator=g).float(), done, torch.randint(6, (T, 2), generator=g),
                   torch.zeros(T, 2), torch.full((T, 2), math.nan), torch.zeros(2, dtype=torch.long), None)
    batch = batch._replace(behaviour_log_prob=log_probs_by_the_learner(agent, batch))
    with torch.no_grad():
        _, baseline, _ = agent(batch.frame, batch.reward, batch.done)
    returns, G = [], baseline[-1]
    for t in reversed(range(T)):
        G = batch.reward[t + 1] + 0.99 * (~batch.done[t + 1]).float() * G
        returns.insert(0, G)
    advantage = torch.stack(returns) - baseline[:-1]
    metrics = update(agent, torch.optim.RMSprop(agent.parameters()), batch, lr=0.0)
    assert metrics["baseline_loss"] == pytest.approx(0.5 * (advantage ** 2).sum().item(), rel=1e-5)
    assert metrics["policy_gradient_loss"] == pytest.approx(-(batch.behaviour_log_prob * advantage).sum().item(),
                                                            rel=1e-5)


def test_run_through_execute_updates_the_model_with_the_decaying_rate(tmp_path):
    """4 updates of 10 frames: the parameters change, the losses are finite, the frames are counted, the learning
    rate is 6e-4 · (1 − frames done / 40) at each update and 0 after, the final test is in the record."""
    trainers = []

    def make(cfg, seed):
        trainers.append(AtariTrainer(cfg, seed))
        trainers[-1].initial = [p.detach().clone() for p in trainers[-1].agent.parameters()]
        return trainers[-1]

    record = execute("atari/tiny", tiny(), make, Schedule(frames=40, eval_every=1, monitor="episode_return",
                                                          mode="max"),
                     seed=0, scale="cpu", results_dir=tmp_path / "r", cache_dir=tmp_path / "c", progress=False)
    trainer = trainers[0]
    assert trainer.pool is None   # closed by final_evaluate
    assert record.steps_done == 4 and record.stopped == "frames"
    assert record.history["frames"].tolist() == [10, 20, 30, 40]
    assert record.history["train_lr"].tolist() == pytest.approx([6e-4 * (1 - f / 40) for f in (0, 10, 20, 30)])
    assert trainer.optimiser.param_groups[0]["lr"] == pytest.approx(6e-4 * 0.25)
    assert learning_rate(6e-4, 40, 40) == learning_rate(6e-4, 50, 40) == 0.0
    assert all(math.isfinite(v) for v in record.history["train_loss"])
    assert record.history["train_policy_lag"].tolist() == [0, 1, 1, 1]
    assert not all(torch.equal(a, b) for a, b in zip(trainer.initial, trainer.agent.parameters()))
    # the config's test policy (greedy) and the other one, on the same games
    assert {"test_score", "test_score_std", "test_capped", "test_sampled_score", "test_sampled_score_std",
            "test_sampled_capped"} <= set(record.final)
    assert record.final["test_capped"] == record.final["test_sampled_capped"] == 2   # Pong games outlast 10 steps


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    """Killed at update 5 after a checkpoint at 4, the run resumes at 4 with the checkpoint's agent and optimiser
    (those of the uninterrupted run at update 4) and ends at the same update and frame count, with the same
    history up to 4 and the same learning rates. The games restart, so the rest is not compared."""
    cfg = tiny(frames=80)
    schedule = Schedule(frames=80, eval_every=2, monitor="episode_return", mode="max")
    at_four = {}

    def make(cfg, seed):
        trainer = AtariTrainer(cfg, seed)
        step = trainer.train_step

        def train_step(s):
            if s == 4:
                at_four.setdefault("agent", {k: v.clone() for k, v in trainer.agent.state_dict().items()})
                at_four.setdefault("optimiser", [v["square_avg"].clone()
                                                 for v in trainer.optimiser.state_dict()["state"].values()])
            return step(s)
        trainer.train_step = train_step
        return trainer

    whole = execute("atari/tiny", cfg, make, schedule, seed=0, scale="cpu", results_dir=tmp_path / "a",
                    cache_dir=tmp_path / "ca", progress=False)

    with pytest.raises(Crash):
        execute("atari/tiny", cfg, crashing(AtariTrainer, at_step=5), schedule, seed=0, scale="cpu",
                results_dir=tmp_path / "b",
                cache_dir=tmp_path / "cb", progress=False)
    resumed_trainers = []

    def resuming(cfg, seed):
        trainer = AtariTrainer(cfg, seed)
        load = trainer.load_state_dict

        def load_state_dict(state):
            load(state)
            resumed_trainers.append({k: v.clone() for k, v in trainer.agent.state_dict().items()})
            resumed_trainers.append([v["square_avg"].clone()
                                     for v in trainer.optimiser.state_dict()["state"].values()])
        trainer.load_state_dict = load_state_dict
        return trainer

    resumed = execute("atari/tiny", cfg, resuming, schedule, seed=0, scale="cpu", results_dir=tmp_path / "b",
                      cache_dir=tmp_path / "cb", progress=False)
    assert resumed.resumed_from == 4
    agent, square_avg = resumed_trainers
    assert all(torch.equal(agent[k], at_four["agent"][k]) for k in agent)
    assert all(torch.equal(a, b) for a, b in zip(square_avg, at_four["optimiser"]))
    assert resumed.steps_done == whole.steps_done == 8
    assert resumed.history["frames"].tolist() == whole.history["frames"].tolist() == [20, 40, 60, 80]
    columns = ["step", "frames", "episode_return", "episodes", "train_loss", "train_lr"]
    assert resumed.history[columns][:2].equals(whole.history[columns][:2])
    assert resumed.history["train_lr"].tolist() == whole.history["train_lr"].tolist()
    assert "test_score" in resumed.final


@pytest.mark.slow
def test_ray_actors_feed_the_learner():
    """Two Ray actors of 2 environments each on a local Ray instance: batches of 4 unrolls, their states
    concatenated in the actors' order, from which the agent reproduces the actors' log-probabilities; the learner
    updates on them."""
    ray = pytest.importorskip("ray", reason="ray is an optional dependency (the multi-machine actors)")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        torch.manual_seed(0)
        cfg = tiny("recurrent_delta_net", envs=4, batch_size=4, actors=2)
        agent = AtariAgent(6, cfg.core, encoder=cfg.encoder)
        pool = RayActors(cfg, seeds=[0, 1], cpus_per_actor=0.5)
        optimiser = torch.optim.RMSprop(agent.parameters(), lr=0.0)   # lr 0: the actors' weights stay the learner's
        for version in range(3):
            batch = pool.batch(agent.state_dict(), version)
            assert batch.frame.shape == (T + 1, 4, 4, 84, 84) and batch.initial_state.position.shape == (4,)
            assert version - int(batch.version.min()) <= pool.max_policy_lag
            torch.testing.assert_close(log_probs_by_the_learner(agent, batch), batch.behaviour_log_prob,
                                       atol=1e-5, rtol=1e-5)
            assert math.isfinite(update(agent, optimiser, batch, lr=0.0)["loss"])
        pool.close()
    finally:
        ray.shutdown()


def test_random_baseline_follows_the_test_protocol():
    """Breakout, uniformly random over its 4 actions, 2 repetitions of 2 games each played to the end (5 lives):
    the mean of the repetition means and their sample standard deviation, reproducible from the seed; with a cap
    of 5 steps every game is capped and scored by its score so far."""
    result = evaluation.random_baseline("breakout", 4, episodes=2, repetitions=2, seed=0, max_steps=3000)
    assert result.scores.shape == (2, 2) and result.capped == 0 and (result.scores >= 0).all()
    means = result.scores.mean(1)
    assert result.mean == pytest.approx(means.mean().item()) and result.std == pytest.approx(means.std().item())
    assert torch.equal(evaluation.random_baseline("breakout", 4, episodes=2, repetitions=2, seed=0,
                                                  max_steps=3000).scores, result.scores)
    capped = evaluation.random_baseline("breakout", 4, episodes=2, repetitions=2, seed=0, max_steps=5)
    assert capped.capped == 4 and torch.equal(capped.scores, torch.zeros(2, 2))


def test_greedy_plays_the_argmax_and_sampled_the_policy():
    """With a policy of 85% on action 2 over 4 actions, greedy plays 2 everywhere; sampled plays 2 about 85% of
    the time and the others otherwise, the same actions for the same seed."""
    logits = torch.tensor([0.05, 0.05, 0.85, 0.05]).log()

    def agent(frame, reward, done, state):
        return logits.expand(1, done.shape[1], 4), None, state

    step = evaluation.AtariStep(torch.zeros(4000, 4, 84, 84, dtype=torch.uint8), *(torch.zeros(4000),) * 2,
                                torch.zeros(4000, dtype=torch.bool), torch.zeros(4000, dtype=torch.bool),
                                torch.zeros(4000), torch.zeros(4000, dtype=torch.int64))
    greedy, _ = evaluation.test_policy("greedy", agent, seed=0)(step, None)
    assert (greedy == 2).all()
    sampled, _ = evaluation.test_policy("sampled", agent, seed=0)(step, None)
    assert (sampled == 2).float().mean().item() == pytest.approx(0.85, abs=0.03) and sampled.unique().numel() == 4
    assert torch.equal(evaluation.test_policy("sampled", agent, seed=0)(step, None)[0], sampled)


@pytest.mark.parametrize("call, message", [
    (lambda: config("atari_tennis_2000", "lstm", "smoke"), "unknown Atari game 'atari_tennis_2000'"),
    (lambda: config("pong", "gru", "smoke"), "unknown core 'gru'"),
    (lambda: tiny(game="tetris_3d"), "unknown Atari game 'tetris_3d'"),
    (lambda: tiny(core="transformer"), "unknown core 'transformer'"),
    (lambda: tiny(encoder="deep"), "unknown encoder 'deep'"),
    (lambda: tiny(batch_size=0), "must be positive"),
    (lambda: tiny(test_policy="softmax"), "unknown test policy 'softmax'"),
    (lambda: evaluation.test_policy("softmax", None, seed=0), "unknown test policy 'softmax'"),
    (lambda: Actor(tiny(num_actions=7), 1, seed=0), "pong's minimal action set has 6 actions"),
    (lambda: config("pong", "lstm", "huge"), "scale must be one of"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_presets_follow_the_paper():
    paper = config("amidar", "recurrent_delta_net", "paper")
    assert paper.num_actions == 6 and config("pong", "lstm", "paper").num_actions == 6
    assert (paper.frames, paper.test_at, paper.batch_size, paper.unroll_length) == (200_000_000, (50_000_000,), 32, 50)
    assert (paper.envs, paper.actors, paper.encoder) == (48, 48, "large")
    assert (paper.lr, paper.alpha, paper.eps, paper.momentum, paper.clip) == (6e-4, 0.99, 0.01, 0.0, 40.0)
    assert (paper.entropy_cost, paper.baseline_cost, paper.discount) == (0.01, 0.5, 0.99)
    assert (paper.test_episodes, paper.test_repetitions, paper.test_policy) == (30, 5, "greedy")
    assert config("pong", "lstm", "cpu").test_policy == "sampled"   # declared in presets.py
    assert dataclasses.replace(paper, bptt=False) != paper
