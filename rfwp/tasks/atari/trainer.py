"""Atari runs (RFWP Sec. 4.4 and App. C): an IMPALA agent trained on one game for a budget of environment steps,
tested as the paper does.

    record = run("pong", "recurrent_delta_net", "cpu", seed=0)
    record.history["episode_return"]   # mean score of the last 100 training games, every eval_every updates
    record.final["test_score"], record.final["test_score_std"]   # the trained agent's test (evaluation.py)
    record.final["test_greedy_score"]  # the same test with the other policy (here the scale's is "sampled")

Frames are environment steps, as the paper's "50 M and 200 M environmental steps" and torchbeast's step count:
one agent step, 4 emulator frames. The ``frames`` budget counts the steps learnt from, unroll_length × batch_size
per update, and the learning rate decays linearly to 0 over it. Actors and learner: ``actors.py``; the update:
``learner.py``.

Resuming. A checkpoint holds the agent, the optimiser, the update and frame counts (the learning rate's position),
the recent training scores and the tests already done. The environments cannot be saved (ale-py's vectorised
environment does not expose its emulators' states), so a resumed run starts new games (seeded from the run's seed
and the update count), with zeroed core states and without the round that was in flight: it goes on from the
checkpointed agent and optimiser, but is not bit-identical to an uninterrupted run. An uninterrupted run is
reproducible (seeded games and action sampling, a deterministic learner).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import partial

from rfwp.models import ModelConfig
from rfwp.tasks.atari import learner
from rfwp.tasks.atari.actors import ActorPool, LocalActors, RayActors, action_count, env_seed
from rfwp.tasks.atari.agent import CORES, ENCODERS, AtariAgent
from rfwp.tasks.atari.environment import game_names
from rfwp.tasks.atari.evaluation import TEST_POLICIES, check_test_policy, evaluate_policy, test_key, test_policy
from rfwp.tasks.atari.presets import ATARI_SMALL, PAPER_ACTION_COUNTS, preset
from rfwp.tasks.atari.vtrace import BASELINE_COST, ENTROPY_COST
from rfwp.train import Schedule, execute

TEST_SEED_KEY = 2**31 - 1   # tests play games seeded apart from the training games'


@dataclass(frozen=True)
class AtariConfig:
    """One run: what is hashed into the run record (the seed is ``execute``'s)."""
    game: str                          # ale-py's name, e.g. "ms_pacman"
    core: str                          # one of agent.CORES
    num_actions: int                   # the agent plays the first this many actions of the game's minimal set
    frames: int                        # budget in environment steps, over which the learning rate decays to 0
    encoder: str = "large"             # agent.ENCODERS
    model_config: ModelConfig = ATARI_SMALL
    bptt: bool = True                  # backpropagation through time within an unroll (agent.py)
    envs: int = 32                     # environments over all actors (actors.py)
    actors: int = 0                    # 0: the environments step in the learner's process; n: n Ray actors
    batch_size: int = 32               # App. C
    unroll_length: int = 50            # App. C: the backpropagation span
    lr: float = learner.LEARNING_RATE
    alpha: float = learner.ALPHA
    eps: float = learner.EPSILON
    momentum: float = learner.MOMENTUM
    clip: float = learner.GRAD_NORM_CLIP
    discount: float = learner.DISCOUNT
    baseline_cost: float = BASELINE_COST
    entropy_cost: float = ENTROPY_COST
    max_episode_frames: int | None = None   # training time limit in emulator frames (None: 400,000, gym's)
    return_window: int = 100           # evaluate() averages the scores of the last this many training games
    test_at: tuple[int, ...] = ()      # also test when training passes these frame counts (the paper: 50 M)
    test_episodes: int = 30            # Sec. 4.4: 30 test episodes × 5 repetitions
    test_repetitions: int = 5
    test_max_steps: int = 250_000      # safety cap of a test game, in agent steps (evaluation.py)
    test_policy: str = "greedy"        # the test's actions (evaluation.TEST_POLICIES); the other is tested too

    def __post_init__(self):
        if self.core not in CORES:
            raise ValueError(f"unknown core {self.core!r}; choose one of {CORES}")
        check_test_policy(self.test_policy)
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {ENCODERS}")
        if self.game not in game_names():
            raise ValueError(f"unknown Atari game {self.game!r}: the valid names are "
                             "rfwp.tasks.atari.environment.game_names(), snake case as in 'ms_pacman'")
        counts = (self.num_actions, self.frames, self.envs, self.batch_size, self.unroll_length,
                  self.test_episodes, self.test_repetitions, self.test_max_steps)
        if min(counts) < 1 or self.actors < 0:
            raise ValueError(f"num_actions, frames, envs, batch_size, unroll_length and the test sizes must be "
                             f"positive, actors ≥ 0; got {self}")
        if self.actors and self.envs % self.actors:
            raise ValueError(f"envs ({self.envs}) must be a multiple of actors ({self.actors}): each Ray actor plays "
                             f"the same number of environments")


class AtariTrainer:
    """A ``rfwp.train.Trainer``: each ``train_step`` is one learner update on a batch from the actors (started
    at the first step, so that a resumed run's actors play with the restored agent). ``ray_address``: see
    ``actors.RayActors`` (used when ``config.actors`` > 0)."""

    def __init__(self, config: AtariConfig, seed: int, ray_address: str | None = None):
        c = self.config = config
        self.seed, self.ray_address = seed, ray_address
        self.agent = AtariAgent(c.num_actions, c.core, encoder=c.encoder, config=c.model_config, bptt=c.bptt)
        self.optimiser = learner.rmsprop(self.agent, c.lr, c.alpha, c.eps, c.momentum)
        self.updates, self.frames_done, self.episodes = 0, 0, 0
        self.returns: deque[float] = deque(maxlen=c.return_window)
        self.tests: dict[str, float] = {}
        self.pool: ActorPool | None = None

    def _start_actors(self) -> ActorPool:
        c = self.config
        if c.actors == 0:
            return LocalActors(c, env_seed(self.seed, self.updates))
        return RayActors(c, [env_seed(self.seed, self.updates, i) for i in range(c.actors)], self.ray_address)

    def train_step(self, step: int) -> dict[str, float]:
        c = self.config
        if self.pool is None:
            self.pool = self._start_actors()
        batch = self.pool.batch(self.agent.state_dict(), self.updates)
        metrics = learner.update(self.agent, self.optimiser, batch,
                                 lr=learner.learning_rate(c.lr, self.frames_done, c.frames), discount=c.discount,
                                 clip=c.clip, baseline_cost=c.baseline_cost, entropy_cost=c.entropy_cost)
        metrics["policy_lag"] = self.updates - int(batch.version.min())
        scores = batch.score[~batch.score.isnan()].tolist()
        self.returns.extend(scores)
        self.episodes += len(scores)
        self.updates += 1
        frames = c.unroll_length * c.batch_size
        for milestone in c.test_at:
            if self.frames_done < milestone <= self.frames_done + frames:
                self.tests.update(self._test(f"_at_{milestone}"))
        self.frames_done += frames
        return {**metrics, "frames": frames}

    def evaluate(self) -> dict[str, float]:
        """The mean unclipped score of the last ``return_window`` training games (NaN before the first ends) and
        the number of games ended so far: cheap, for the learning curves."""
        mean = sum(self.returns) / len(self.returns) if self.returns else float("nan")
        return {"episode_return": mean, "episodes": self.episodes}

    def final_evaluate(self) -> dict[str, float]:
        """Stops the actors; the paper's test of the trained agent (``test_score``, ``test_score_std``,
        ``test_capped``), and those done at ``test_at`` (``test_score_at_<frames>``, ...)."""
        self.close()
        return {**self.tests, **self._test("")}

    def _test(self, suffix: str) -> dict[str, float]:
        """The test with the config's policy (``test_score``, ...) and with the other one (``test_<policy>_score``,
        ...), the same games (seeds) for both."""
        c = self.config
        self.agent.eval()
        seed = env_seed(self.seed, TEST_SEED_KEY)
        out = {}
        for name in TEST_POLICIES:
            result = evaluate_policy(c.game, test_policy(name, self.agent, seed), episodes=c.test_episodes,
                                     repetitions=c.test_repetitions, seed=seed, max_steps=c.test_max_steps)
            test = test_key(name, c.test_policy)
            out.update({f"{test}_score{suffix}": result.mean, f"{test}_score_std{suffix}": result.std,
                        f"{test}_capped{suffix}": result.capped})
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "optimiser": self.optimiser.state_dict(), "updates": self.updates,
                "frames_done": self.frames_done, "episodes": self.episodes, "returns": list(self.returns),
                "tests": dict(self.tests)}

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.updates, self.frames_done, self.episodes = state["updates"], state["frames_done"], state["episodes"]
        self.returns = deque(state["returns"], maxlen=self.config.return_window)
        self.tests = dict(state["tests"])


def make_trainer(config: AtariConfig, seed: int, ray_address: str | None = None) -> AtariTrainer:
    return AtariTrainer(config, seed, ray_address)


def run_name(game: str, core: str, bptt: bool = True) -> str:
    """e.g. "atari/pong/recurrent_delta_net", or ".../recurrent_delta_net_detached" without BPTT."""
    return f"atari/{game}/{core}" + ("" if bptt else "_detached")


def config(game: str, core: str, scale: str, bptt: bool = True) -> AtariConfig:
    """The run of ``core`` on ``game`` at ``scale`` (presets.py), with the game's action space (App. C)."""
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; choose one of {CORES}")
    p = preset(scale)
    num_actions = PAPER_ACTION_COUNTS.get(game) or action_count(game)
    return AtariConfig(game, core, num_actions, p.frames, encoder=p.encoder, model_config=p.model_config, bptt=bptt,
                       envs=p.envs, actors=p.actors, batch_size=p.batch_size, unroll_length=p.unroll_length,
                       test_at=p.test_at, test_episodes=p.test_episodes, test_repetitions=p.test_repetitions,
                       test_max_steps=p.test_max_steps, test_policy=p.test_policy)


def schedule(scale: str) -> Schedule:
    """The scale's budget of environment steps, a training-score evaluation every ``eval_every`` updates."""
    p = preset(scale)
    return Schedule(frames=p.frames, eval_every=p.eval_every, monitor="episode_return", mode="max")


def run(game: str, core: str, scale: str, seed: int = 0, bptt: bool = True, ray_address: str | None = None,
        **execute_kwargs):
    """One run through ``rfwp.train.execute``; ``execute_kwargs``: results_dir, cache_dir, progress, train."""
    return execute(run_name(game, core, bptt), config(game, core, scale, bptt),
                   partial(make_trainer, ray_address=ray_address), schedule(scale), seed=seed, scale=scale,
                   **execute_kwargs)
