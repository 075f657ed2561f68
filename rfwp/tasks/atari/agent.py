"""The Atari agent's network, RFWP Sec. 4.4: IMPALA's "large" net (Espeholt et al. 2018, Fig. 3 right) with its
LSTM replaced by a fast weight core, as in the authors' torchbeast (original-code.md §5).

    agent = AtariAgent(num_actions=6, core="recurrent_delta_net")
    logits, baseline, state = agent(frames, reward, done)          # a whole unroll, (T, B, ...)
    logits, baseline, state = agent(frames, reward, done, state)   # the next one, from the last one's state

Per step: the 4 stacked 84×84 frames → encoder → 256 features, with the clipped reward of the previous step
appended (257 numbers, torchbeast's core input) → core → policy logits (num_actions) and baseline (1).

Cores (``CORES``): "feedforward" (none: the heads read the 257 features, Espeholt et al.'s feed-forward agent),
"lstm" (nn.LSTM, 1 layer of 256: the paper's baseline), and the fast weight models of ``rfwp.models``
("linear_transformer", "delta_net", "recurrent_delta_net", "delta_rnn") in the configuration ``config``
(ATARI_SMALL: 2 layers of 128, 4 heads, d_ff 512, pre-LN; ATARI_LARGE for the larger RDN of Table 3).

Heads. The library's sequence model ends in a layer norm and a Linear to ``n_outputs``; we set n_outputs to
num_actions + 1 and read its outputs as the policy logits and the baseline. torchbeast's heads are two Linear
layers on the core's output, policy (core → num_actions) and baseline (core → 1), which is exactly one Linear to
num_actions + 1; a separate feature Linear before them would be a second linear map in a row, adding parameters
and nothing to what the heads can compute. The LSTM and feed-forward cores end in the same single Linear. With
these heads our counts round to every number of Table 7's caption (``PAPER_AGENTS``; ``parameter_table``).

Backpropagation through time (``bptt``). With bptt=True (ours, the default) the core runs the whole unroll in one
call and its state carries the gradient from step to step within the unroll, as torchbeast's LSTM does. The
authors' fast weight cores did not: their CUDA kernels return no gradient for the initial fast weights and RNN
state, and the core runs one step at a time (original-code.md §5), so every step's state arrives detached.
bptt=False reproduces that: one step at a time, the state detached before each step, for whichever core (the
paper's LSTM had BPTT: train it with bptt=True). It does not reproduce the wrong query gradient of their Linear
Transformer kernel with a non-zero initial state (original-code.md §2). The forward values are the same either way.

The state returned is the state after the last step as computed, with its graph when bptt=True; the caller
detaches it between unrolls (``rfwp.models.detach_state``). In IMPALA the learner starts each unroll from the
state the actors recorded at its start, which carries no gradient anyway.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from rfwp.models import ModelConfig, build_model, detach_state
from rfwp.tasks.atari.presets import ATARI_LARGE, ATARI_SMALL

FAST_WEIGHT_CORES = ("linear_transformer", "delta_net", "recurrent_delta_net", "delta_rnn")
CORES = ("feedforward", "lstm", *FAST_WEIGHT_CORES)
ENCODERS = ("large", "shallow")
FRAME_SHAPE = (4, 84, 84)   # 4 stacked 84×84 grayscale frames (the environment's observation)
FEATURES = 256              # the encoder's output, both of Espeholt et al.'s nets
CORE_INPUT = FEATURES + 1   # and the clipped reward

# (core, its configuration, the paper's parameter count in millions): Table 7's caption, and the larger RDN of
# Sec. 4.4 / Table 3 ("3.4 M", 4 layers of 256, 8 heads; d_ff not stated). Our counts round to these numbers with
# ATARI_SMALL; the larger RDN does so with d_ff 512 (3.37 M), not with ATARI_LARGE's guess d_ff 1024 (4.42 M).
PAPER_AGENTS = (
    ("feedforward", ATARI_SMALL, 1.1),
    ("lstm", ATARI_SMALL, 1.6),
    ("linear_transformer", ATARI_SMALL, 1.5),
    ("delta_net", ATARI_SMALL, 1.5),
    ("recurrent_delta_net", ATARI_SMALL, 1.5),
    ("delta_rnn", ATARI_SMALL, 1.6),
    ("recurrent_delta_net", ATARI_LARGE, 3.4),
)


# ----------------------------------------------------------------------------------------------
# Encoders (Espeholt et al. 2018, Fig. 3)

class ResidualBlock(nn.Module):
    """x + conv(ReLU(conv(ReLU(x)))), 3×3 convolutions keeping the size and channels (pre-activation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class LargeEncoder(nn.Module):
    """IMPALA's large net (Fig. 3 right, "15 layers"): 3 stages of 16, 32, 32 channels, each a 3×3 convolution,
    a 3×3 max-pool with stride 2 (84 → 42 → 21 → 11) and 2 residual blocks; then ReLU → Linear(32·11·11 = 3872
    → 256) → ReLU."""

    def __init__(self):
        super().__init__()
        stages, channels = [], FRAME_SHAPE[0]
        for out in (16, 32, 32):
            stages += [nn.Conv2d(channels, out, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       ResidualBlock(out), ResidualBlock(out)]
            channels = out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(32 * 11 * 11, FEATURES)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(torch.relu(self.stages(x)).flatten(1)))


class ShallowEncoder(nn.Module):
    """IMPALA's shallow net (Fig. 3 left, Mnih et al. 2016's): 8×8 convolution with stride 4 to 16 channels
    (84 → 20) → ReLU → 4×4 with stride 2 to 32 (20 → 9) → ReLU → Linear(32·9·9 = 2592 → 256) → ReLU.
    Not the paper's (it uses the large net); about 10× cheaper in convolutions, for CPU-sized runs."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(FRAME_SHAPE[0], 16, 8, stride=4), nn.ReLU(),
                                   nn.Conv2d(16, 32, 4, stride=2), nn.ReLU())
        self.fc = nn.Linear(32 * 9 * 9, FEATURES)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(self.convs(x).flatten(1)))


# ----------------------------------------------------------------------------------------------
# Cores with their heads: (T, B, CORE_INPUT) features, (T, B) done, state → (T, B, num_actions + 1), state

class FeedForwardCore(nn.Module):
    """No core: the heads read the encoder's features and the reward directly. State: always None."""

    def __init__(self, n_outputs: int):
        super().__init__()
        self.head = nn.Linear(CORE_INPUT, n_outputs)

    def forward(self, x: Tensor, done: Tensor, state: None = None):
        return self.head(x), None


class LSTMCore(nn.Module):
    """nn.LSTM (time-major) and the heads. A done step starts from a zero state, as torchbeast's LSTM (which
    multiplies the state by 1 − done before each step). State: (h, c) as in nn.LSTM; None is zeros."""

    def __init__(self, hidden: int, layers: int, n_outputs: int):
        super().__init__()
        self.lstm = nn.LSTM(CORE_INPUT, hidden, layers)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, x: Tensor, done: Tensor, state: tuple[Tensor, Tensor] | None = None):
        # nn.LSTM cannot zero its state mid-sequence: run it piece by piece, cut wherever a row starts an episode
        cuts = sorted({0, x.shape[0], *done.any(1).nonzero().flatten().tolist()})
        outs = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            if state is not None:
                # overwrite, not multiply by 0: an inf or NaN state must not survive a reset
                state = tuple(torch.where(done[a][None, :, None], 0.0, s) for s in state)
            out, state = self.lstm(x[a:b], state)
            outs.append(out)
        return self.head(torch.cat(outs)), state


# The authors' RL cores (original-code.md §3): the Delta RNN's queries and keys through a softmax, not ELU + 1.
RL_FEATURE_MAPS = {"delta_rnn": "softmax"}


class FastWeightCore(nn.Module):
    """A fast weight model of ``rfwp.models`` (batch-first) with d_input = 257: its input Linear is the authors'
    Linear(257 → d_model), its final layer norm and Linear(d_model → num_actions + 1) the heads.
    State: the model's SequenceState; None is zeros."""

    def __init__(self, name: str, config: ModelConfig, n_outputs: int):
        super().__init__()
        feature_map = RL_FEATURE_MAPS.get(name, config.feature_map)
        self.model = build_model(name, replace(config, d_input=CORE_INPUT, n_outputs=n_outputs,
                                               feature_map=feature_map))

    def forward(self, x: Tensor, done: Tensor, state=None):
        out, state = self.model(x.transpose(0, 1), state, done.transpose(0, 1))
        return out.transpose(0, 1), state


# ----------------------------------------------------------------------------------------------
# The agent

class AtariAgent(nn.Module):
    """Encoder → core → policy logits and baseline, over whole unrolls (see the module docstring).

    ``core``: one of CORES. ``encoder``: "large" (the paper's) or "shallow". ``config``: the fast weight core's
    configuration (ATARI_SMALL, or ATARI_LARGE for the larger RDN); the LSTM takes its size from
    ``config.lstm_hidden`` and ``config.lstm_layers`` (256 and 1 in both). ``bptt``: see the module docstring;
    an attribute, so the same weights can run either way."""

    def __init__(self, num_actions: int, core: str, *, encoder: str = "large", config: ModelConfig = ATARI_SMALL,
                 bptt: bool = True):
        super().__init__()
        if core not in CORES:
            raise ValueError(f"unknown core {core!r}; choose one of {CORES}")
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {ENCODERS}")
        self.num_actions, self.core_name, self.bptt = num_actions, core, bptt
        self.encoder = LargeEncoder() if encoder == "large" else ShallowEncoder()
        n_outputs = num_actions + 1
        if core == "feedforward":
            self.core = FeedForwardCore(n_outputs)
        elif core == "lstm":
            self.core = LSTMCore(config.lstm_hidden, config.lstm_layers, n_outputs)
        else:
            self.core = FastWeightCore(core, config, n_outputs)

    def forward(self, frames: Tensor, reward: Tensor, done: Tensor, state=None):
        """frames uint8 (T, B, 4, 84, 84), reward (T, B) the reward of the step before (clipped to [-1, 1] here,
        as in torchbeast's net), done bool (T, B), True where step t is the first of a new episode (the core's
        state is zeroed before it) → policy logits (T, B, num_actions), baseline (T, B), the state after step T."""
        return self.policy_and_baseline(self.encode(frames, reward), done, state)

    def encode(self, frames: Tensor, reward: Tensor) -> Tensor:
        """The core's input (T, B, 257): the encoder's features of the frames, scaled to [0, 1], and the
        clipped reward."""
        if frames.dim() != 5 or tuple(frames.shape[2:]) != FRAME_SHAPE or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 of shape (T, B, 4, 84, 84): T steps of B environments, 4 stacked "
                             f"84×84 frames each; got {frames.dtype} of shape {tuple(frames.shape)}")
        T, B = frames.shape[:2]
        if tuple(reward.shape) != (T, B):
            raise ValueError(f"reward must have the shape (T, B) = {(T, B)} of the frames; got {tuple(reward.shape)}")
        dtype = self.encoder.fc.weight.dtype
        features = self.encoder(frames.flatten(0, 1).to(dtype) / 255).view(T, B, FEATURES)
        return torch.cat([features, reward.clamp(-1, 1).to(dtype)[..., None]], dim=-1)

    def policy_and_baseline(self, features: Tensor, done: Tensor, state=None):
        """The core and the heads on the encoded unroll ``features`` (T, B, 257) → logits, baseline, state."""
        if features.dim() != 3 or features.shape[-1] != CORE_INPUT:
            raise ValueError(f"features must have the shape (T, B, {CORE_INPUT}); got {tuple(features.shape)}")
        T, B = features.shape[:2]
        if tuple(done.shape) != (T, B) or done.dtype != torch.bool:
            raise ValueError(f"done must be a bool tensor of shape (T, B) = {(T, B)}, True where a step starts a new "
                             f"episode; got {done.dtype} of shape {tuple(done.shape)}")
        if self.bptt:
            out, state = self.core(features, done, state)
        else:
            # the authors' fast weight cores: one step at a time, the carried state without gradient (module docstring)
            outs = []
            for t in range(T):
                out, state = self.core(features[t:t + 1], done[t:t + 1], detach_state(state))
                outs.append(out)
            out = torch.cat(outs)
        return out[..., :self.num_actions], out[..., self.num_actions], state


# ----------------------------------------------------------------------------------------------
# Parameter counts against the paper's

def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(num_actions: int = 6, encoder: str = "large") -> list[tuple[str, ModelConfig, int, float]]:
    """(core, config, our parameter count, the paper's in millions) for each row of PAPER_AGENTS. The paper's
    agents have each game's minimal action set (3 to 18 actions); App. C names 6 for two games, our default."""
    return [(core, config, parameter_count(AtariAgent(num_actions, core, encoder=encoder, config=config)), paper)
            for core, config, paper in PAPER_AGENTS]


if __name__ == "__main__":
    for core, config, ours, paper in parameter_table():
        size = f"{config.n_layers} × {config.d_model}, d_ff {config.d_ff}" if core in FAST_WEIGHT_CORES else ""
        print(f"{core:20s} {size:22s} ours {ours / 1e6:5.3f} M   paper {paper:.1f} M")
