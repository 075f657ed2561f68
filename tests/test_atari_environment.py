"""The batched Atari environments: preprocessing, frame stacks across resets, episodic life, reward clipping with
the raw scores kept, the unknown-game error. One or two environments, at most ~500 emulator frames a test."""
from __future__ import annotations

import pytest
import torch

from rfwp.tasks.atari.environment import AtariEnvironments, game_names

FIRE = 1  # FIRE's index in the minimal action sets of Breakout and Space Invaders


def test_shapes_and_dtypes():
    with AtariEnvironments("pong", 2, seed=0) as envs:
        assert envs.action_names == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
        first = envs.reset()
        assert first.done.all() and not first.episode_end.any()
        step = envs.step(torch.randint(envs.num_actions, (2,), generator=torch.Generator().manual_seed(0)))
        for s in (first, step):
            assert s.frame.shape == (2, 4, 84, 84) and s.frame.dtype == torch.uint8
            assert s.frame[:, -1].float().std() > 0  # a picture, not a constant
            assert {k: v.shape for k, v in s._asdict().items() if k != "frame"} == dict.fromkeys(
                ["reward", "raw_reward", "done", "episode_end", "episode_return", "episode_step"], (2,))
            assert (s.reward.dtype, s.raw_reward.dtype, s.episode_return.dtype) == (torch.float32,) * 3
            assert (s.done.dtype, s.episode_end.dtype, s.episode_step.dtype) == (torch.bool, torch.bool, torch.int64)


def test_frame_stack_slides_and_is_cleared_at_a_reset():
    """Each step pushes one frame (oldest first); a new episode's stack is three zero frames and its first frame,
    nothing of the previous episode. A 40-frame time limit ends the episode at step 10."""
    with AtariEnvironments("pong", 1, seed=0, max_episode_frames=40) as envs:
        previous = envs.reset().frame
        assert (previous[0, :3] == 0).all() and previous[0, 3].any()
        for t in range(1, 11):
            step = envs.step(torch.tensor([2]))
            if t < 10:
                assert not step.done.any()
                assert torch.equal(step.frame[0, :3], previous[0, 1:])
            previous = step.frame
        assert step.done.all() and step.episode_end.all() and step.episode_step.item() == 10
        assert (step.frame[0, :3] == 0).all() and step.frame[0, 3].any()


def test_episodic_life_in_training_only():
    """Breakout, FIRE only: in training each lost life is a ``done`` while the game, its score and its steps go
    on to the game over; in evaluation only the game over is."""
    for training in (True, False):
        with AtariEnvironments("breakout", 1, seed=0, training=training) as envs:
            envs.reset()
            dones, steps = 0, 0
            while True:
                step = envs.step(torch.tensor([FIRE]))
                steps += 1
                dones += int(step.done.item())
                if step.episode_end.item() or steps == 200:
                    break
            assert step.episode_end.item() and step.done.item() and step.episode_step.item() == steps
            assert dones == (5 if training else 1)  # Breakout's 5 lives


def test_rewards_clipped_and_raw_scores_kept():
    """Space Invaders' invaders are worth 5 to 30 points: ``reward`` is clipped to 1, ``raw_reward`` and the
    episode return keep the score."""
    with AtariEnvironments("space_invaders", 1, seed=0) as envs:
        envs.reset()
        raw, score = [], 0.0
        for _ in range(120):
            step = envs.step(torch.tensor([FIRE]))
            assert torch.equal(step.reward, step.raw_reward.clamp(-1, 1))
            raw.append(step.raw_reward.item())
            score += raw[-1]
            assert step.episode_return.item() == score
        assert max(raw) > 1


def test_unknown_game():
    assert "pong" in game_names() and "ms_pacman" in game_names()
    with pytest.raises(ValueError, match=r"^unknown Atari game 'Pong': .*game_names\(\)") as error:
        AtariEnvironments("Pong", 1)
    assert "\n" not in str(error.value)
