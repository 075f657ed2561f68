"""The paper's configurations of the Atari agents' fast weight cores, and what the Atari notebook runs at each scale."""
from __future__ import annotations

from dataclasses import dataclass

from rfwp.models import ModelConfig
from rfwp.train import check_scale

# RFWP Sec. 4.4 and original-code.md §5: the fast weight core replacing the LSTM(256) of IMPALA's large
# net (the ResNet features plus clipped reward, 257 numbers per step, are the d_input). ATARI_LARGE's
# d_ff is not stated in the paper; 512 (the small one's) gives the agent Table 3's 3.4 M parameters (1024: 4.4 M).
ATARI_SMALL = ModelConfig(d_model=128, n_layers=2, n_heads=4, d_ff=512, dropout=0.0, lstm_hidden=256)
ATARI_LARGE = ModelConfig(d_model=256, n_layers=4, n_heads=8, d_ff=512, dropout=0.0, lstm_hidden=256)

# The 20 games of Tables 7 and 8, in their order (ale-py's names).
PAPER_GAMES = ("alien", "amidar", "assault", "battle_zone", "berzerk", "bank_heist", "beam_rider", "demon_attack",
               "gopher", "jamesbond", "kung_fu_master", "ms_pacman", "pong", "qbert", "robotank", "seaquest",
               "space_invaders", "star_gunner", "up_n_down", "zaxxon")
# App. C: "models for Amidar and James Bond were trained with an action space size of 6" (the first 6 actions of
# their minimal sets, NOOP FIRE UP RIGHT LEFT DOWN); every other game has its whole minimal set.
PAPER_ACTION_COUNTS = {"amidar": 6, "jamesbond": 6}
# Tables 7 and 8's columns: the feed-forward baseline, the LSTM, LT, Delta Net, RDN and Delta RNN.
PAPER_CORES = ("feedforward", "lstm", "linear_transformer", "delta_net", "recurrent_delta_net", "delta_rnn")


@dataclass(frozen=True)
class AtariScale:
    """What the Atari notebook runs at one scale: every game × core, trained for ``frames`` environment steps
    (agent steps, 4 emulator frames each: the paper's "environmental steps", torchbeast's count) and tested
    with the trained agent at each of ``test_at`` and at the end."""
    games: tuple[str, ...]
    cores: tuple[str, ...]
    frames: int                       # the training budget, over which the learning rate decays to 0
    envs: int                         # environments over all actors: unrolls played per round (actors.py)
    batch_size: int                   # unrolls per learner update (App. C: 32)
    unroll_length: int                # steps per unroll, the backpropagation span (App. C: 50)
    eval_every: int                   # learner updates between training-return evaluations (the learning curves)
    actors: int = 0                   # 0: the environments step in the learner's process; n: n Ray actors
    encoder: str = "large"            # "large" (the paper's ResNet) or "shallow"
    model_config: ModelConfig = ATARI_SMALL
    test_at: tuple[int, ...] = ()     # also test the agent when training passes these frame counts
    test_episodes: int = 30           # Sec. 4.4: 30 test episodes, repeated 5 times
    test_repetitions: int = 5
    test_max_steps: int = 250_000     # safety cap of a test episode, in agent steps (the paper has no time limit)
    test_policy: str = "greedy"       # the test's actions: the argmax (the authors' test mode) or "sampled"
    seeds: tuple[int, ...] = (0,)     # training runs of each game × core (the paper: one, tested 5 × 30 episodes)


# RFWP Sec. 4.4, App. C and original-code.md §5: 200 M steps with a test at 50 M (the authors' extra checkpoint),
# 48 actors, batch 32, unroll 50, the large ResNet; 30 test episodes × 5. The test cap: 10^6 emulator frames.
PAPER = AtariScale(PAPER_GAMES, PAPER_CORES, frames=200_000_000, envs=48, batch_size=32, unroll_length=50,
                   eval_every=1000, actors=48, test_at=(50_000_000,))
# A few hundred frames of every core: 4 environments, unrolls of 5 steps, a test of 2 × 2 short episodes.
SMOKE = AtariScale(("pong",), PAPER_CORES, frames=200, envs=4, batch_size=4, unroll_length=5, eval_every=5,
                   encoder="shallow", test_at=(100,), test_episodes=2, test_repetitions=2, test_max_steps=50)
# Chosen by measurement (results/benchmarks/atari.md: one torch thread, the emulators' thread on the other core):
# with IMPALA's large ResNet every agent trains at 66-85 environment steps/s, 0.3 M steps an hour, too few to learn;
# with the shallow encoder at 550-940 steps/s, about 3 M an hour. So: the shallow encoder, 2 M steps a run (about
# an hour with its tests, one run at a time: two at a time share the 2 cores and each runs at about half speed),
# 16 environments and batches of 16 unrolls of 50. Two games where the paper's recurrent agents beat the
# feedforward one at 50 M steps (Table 7: Kung-Fu Master, LSTM 15,216 against 5,449; Seaquest, RDN 686 and LSTM 708
# against 469) and where a random policy is far below a trained agent; the feedforward baseline, the LSTM and the
# RDN; 10 test episodes × 3 repetitions, each capped at 27,000 agent steps (30 minutes of play). The test samples
# the agent's actions: after 2 M steps a policy is still broad and its argmax can be one action everywhere (a first
# Kung-Fu Master run, feedforward, scored 0 in every greedy test game while its training games averaged thousands
# of points); the greedy test is recorded beside it. Pong is left out: every agent of the paper scores 21 on it
# (Table 7), so it separates none.
CPU = AtariScale(("kung_fu_master", "seaquest"), ("feedforward", "lstm", "recurrent_delta_net"),
                 frames=2_000_000, envs=16, batch_size=16, unroll_length=50, eval_every=25, encoder="shallow",
                 test_episodes=10, test_repetitions=3, test_max_steps=27_000, test_policy="sampled")


def preset(scale: str) -> AtariScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]
