"""Batched Atari 2600 environments for IMPALA, RFWP Sec. 4.4 and App. C.

    envs = AtariEnvironments("pong", num_envs=8, seed=0)
    step = envs.reset()                            # step.frame: uint8 (8, 4, 84, 84), step.done all True
    step = envs.step(actions)                      # actions: int64 (8,), indices into envs.action_names
    scores = step.episode_return[step.episode_end]  # unclipped scores of the games that ended at this step

The emulators run in C++ threads in ale-py's vectorised environment (``ale_py.AtariVectorEnv``), which also does
the preprocessing in C++ (ROMs bundled with ale-py; no OpenCV Python package). The settings are DeepMind's, as
in the authors' environment: torchbeast's ``<Game>NoFrameskip-v4`` under the baselines wrappers ``make_atari``
and ``wrap_deepmind`` (original-code.md §5), with these differences and choices:

- Frame skip 4, the observation the max over the last two frames (MaxAndSkipEnv). App. C says "no action repeat
  is used"; the authors' code repeats each action for 4 frames, and we follow the code: one agent step is 4
  emulator frames.
- Sticky actions: ale-py's ``repeat_action_probability`` (at each frame the emulator repeats the previous action
  with this probability). App. C says "the only source of stochasticity is the default sticky action", but
  the authors' ``NoFrameskip-v4`` environments default to 0 (0.25 is the default of the v0 and v5 ones), and
  so does ale-py's vectorised environment. We follow the code, REPEAT_ACTION_PROBABILITY = 0: the randomness
  is then that of the no-op starts. The argument takes 0.25 for Machado et al.'s sticky actions.
- No-op starts: at each reset ale-py presses FIRE (in games that have it) and then plays up to 29 no-op frames
  (uniform on 0..29, one fewer after FIRE; the wrappers play 1..30 and then press FIRE).
- Episodic life, in training only: a lost life ends the learner's episode (``done``: V-trace does not bootstrap
  across it and the core's state is reset) while the game goes on, as in EpisodicLifeEnv. We detect it here
  from the life counter, because ale-py 0.12's own ``episodic_life`` restarts the whole game at a lost life
  (the agent would only ever play its first life) and its ``life_loss_info`` does not tell a lost life from
  a game over. After a lost life the wrappers also press FIRE; here the agent does so itself (FIRE is in the
  minimal action sets of the games that need it).
- 84×84 grayscale: ALE's luminance palette and an area resize (cv2.INTER_AREA, as WarpFrame's).
- Frame stack 4, oldest first. ale-py clears the stack at a reset: the first observation of an episode is
  three zero frames and its first frame (the wrappers repeat the first frame four times), so no frame of the
  previous episode is ever in it.
- Each game's minimal action set (App. C: "game specific action spaces").
- Rewards: the environment gives the game's score changes, unclipped; ``reward`` is them clipped to [-1, 1]
  (torchbeast's "abs_one" clipping), what the agent learns from and sees, and ``episode_return`` sums the
  unclipped ones over a whole game (across its lives), the score reported in evaluation.
- Time limit: in training an episode is cut after 400,000 frames (the TimeLimit that gym registered for
  ``NoFrameskip-v4``: 100,000 × the game's DeepMind frame skip, 4, and 3 for Space Invaders, which we do not
  single out), counted as an episode end as torchbeast does; none in evaluation (App. C: "No time limit is
  set for evaluation").
"""
from __future__ import annotations

from typing import NamedTuple

import ale_py
import numpy as np
import torch
from ale_py import roms
from torch import Tensor

FRAME_SKIP = 4
STACK = 4
SIZE = 84
NOOP_MAX = 30
REPEAT_ACTION_PROBABILITY = 0.0   # NoFrameskip-v4's, the authors' environments' (see the module docstring)
TRAINING_FRAME_LIMIT = 400_000    # gym's TimeLimit for NoFrameskip-v4, in emulator frames
NO_FRAME_LIMIT = 2**31 - 1        # ale-py's limit is a C++ int


def game_names() -> list[str]:
    """The valid game names: the ROMs bundled with ale-py, in snake case ("ms_pacman", "space_invaders")."""
    return roms.get_all_rom_ids()


class AtariStep(NamedTuple):
    """One step of every environment, tensors of shape (num_envs, ...): torchbeast's ``Environment`` outputs,
    batched. Where ``episode_end``, ``frame`` is already the first observation of the next game (the game was
    reset within the step) while the other fields still describe the step that ended the last one."""
    frame: Tensor           # uint8 (num_envs, 4, 84, 84), the 4 last preprocessed frames, oldest first
    reward: Tensor          # float32, raw_reward clipped to [-1, 1]: the reward learnt from
    raw_reward: Tensor      # float32, the change of the game score
    done: Tensor            # bool, the learner's episode ended: game over, time limit, or a lost life in training
    episode_end: Tensor     # bool, the game itself ended (game over or time limit): where scores are reported
    episode_return: Tensor  # float32, unclipped score of the game so far; where episode_end, its final score
    episode_step: Tensor    # int64, agent steps of the game so far; where episode_end, its length


class AtariEnvironments:
    """``num_envs`` copies of one game, stepped together (see the module docstring for the settings).

    ``training`` turns on episodic life and the 400,000-frame time limit; evaluation has neither.
    ``max_episode_frames`` sets another time limit (None: the paper's). ``seed`` seeds the environments with
    seed, seed + 1, ... (emulator and no-op starts; None: random).
    """

    def __init__(self, game: str, num_envs: int, *, training: bool = True, seed: int | None = None,
                 num_threads: int = 1, repeat_action_probability: float = REPEAT_ACTION_PROBABILITY,
                 max_episode_frames: int | None = None):
        if game not in game_names():
            raise ValueError(f"unknown Atari game {game!r}: the valid names are "
                             "rfwp.tasks.atari.environment.game_names(), snake case as in 'ms_pacman'")
        self.game, self.num_envs, self.training, self.seed = game, num_envs, training, seed
        if max_episode_frames is None:
            max_episode_frames = TRAINING_FRAME_LIMIT if training else NO_FRAME_LIMIT
        self._env = ale_py.AtariVectorEnv(
            game, num_envs, num_threads=num_threads, repeat_action_probability=repeat_action_probability,
            frameskip=FRAME_SKIP, maxpool=True, stack_num=STACK, img_height=SIZE, img_width=SIZE, grayscale=True,
            noop_max=NOOP_MAX, use_fire_reset=True, full_action_space=False,
            # lives are tracked here (module docstring), rewards clipped here so that the raw ones are kept
            episodic_life=False, life_loss_info=False, reward_clipping=False,
            max_num_frames_per_episode=max_episode_frames,
            # a finished game is reset within the step that ends it, as in torchbeast
            autoreset_mode="SameStep")
        self.action_names = [action.name for action in self._env.ale.get_action_set()]
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._return = np.zeros(num_envs, dtype=np.float64)
        self._steps = np.zeros(num_envs, dtype=np.int64)

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def reset(self) -> AtariStep:
        """Starts a new game in every environment. ``done`` is True everywhere, as in torchbeast's initial
        step, so that a recurrent core starts from its initial state."""
        frame, info = self._env.reset(seed=self.seed)
        self._lives = info["lives"].astype(np.int64)
        self._return[:] = 0
        self._steps[:] = 0
        n = self.num_envs
        return AtariStep(_frames(frame), torch.zeros(n), torch.zeros(n), torch.ones(n, dtype=torch.bool),
                         torch.zeros(n, dtype=torch.bool), torch.zeros(n), torch.zeros(n, dtype=torch.int64))

    def step(self, actions: Tensor) -> AtariStep:
        """Plays ``actions`` (int64 (num_envs,), indices into ``action_names``) for 4 frames in every
        environment; the games that end are reset."""
        frame, raw, terminated, truncated, info = self._env.step(actions.cpu().numpy().astype(np.int64))
        episode_end = terminated | truncated
        lives = info["lives"].astype(np.int64)
        # where episode_end, lives is already the new game's, and done is True anyway
        life_lost = lives < self._lives
        done = episode_end | life_lost if self.training else episode_end
        self._lives = lives
        self._return += raw
        self._steps += 1
        episode_return, episode_step = self._return.copy(), self._steps.copy()
        self._return[episode_end] = 0
        self._steps[episode_end] = 0
        raw_reward = torch.from_numpy(raw.astype(np.float32))
        return AtariStep(_frames(frame), raw_reward.clamp(-1, 1), raw_reward, torch.from_numpy(done),
                         torch.from_numpy(episode_end), torch.from_numpy(episode_return.astype(np.float32)),
                         torch.from_numpy(episode_step))

    def close(self) -> None:
        """Stops the emulator threads."""
        self._env.close()

    def __enter__(self) -> AtariEnvironments:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frames(observation: np.ndarray) -> Tensor:
    # ale-py hands over a fresh, read-only buffer at each step; torch needs a writable one
    return torch.from_numpy(np.require(observation, requirements="W"))
