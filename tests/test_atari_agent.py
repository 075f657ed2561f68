"""The Atari agent (RFWP Sec. 4.4): backpropagation through time or the authors' detached state, resets at done
steps, unrolls cut in two, parameter counts against Table 7's caption, shapes and errors. T = 5 steps of B = 2."""
from __future__ import annotations

import pytest
import torch

from rfwp.tasks.atari.agent import (CORE_INPUT, CORES, FAST_WEIGHT_CORES, AtariAgent, parameter_count,
                                    parameter_table)

T, B, A = 5, 2, 6
RECURRENT_CORES = ("lstm", *FAST_WEIGHT_CORES)


def agent(core: str, encoder: str = "shallow", **kwargs) -> AtariAgent:
    torch.manual_seed(0)
    return AtariAgent(A, core, encoder=encoder, **kwargs).double().eval()


def unroll(seed: int = 0, steps: int = T):
    """Random frames and rewards; every row starts an episode at step 0, row 0 again at step 2, row 1 at 3."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(256, (steps, B, 4, 84, 84), generator=g, dtype=torch.uint8)
    reward = torch.randn(steps, B, generator=g)
    done = torch.zeros(steps, B, dtype=torch.bool)
    done[0], done[2, 0], done[3, 1] = True, True, True
    return frames, reward, done


def flat(state) -> list[torch.Tensor]:
    """Every tensor of a (nested) state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in flat(s)] if isinstance(state, (tuple, list)) else []


def last_step_gradient(model: AtariAgent, done: torch.Tensor) -> torch.Tensor:
    """|∂(outputs at the last step)/∂(core input at step t)|, summed per step: (T,)."""
    features = torch.randn(T, B, CORE_INPUT, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                           requires_grad=True)
    logits, baseline, _ = model.policy_and_baseline(features, done)
    (gradient,) = torch.autograd.grad(logits[-1].sum() + baseline[-1].sum(), features)
    return gradient.abs().sum((1, 2))


@pytest.mark.parametrize("core", RECURRENT_CORES)
def test_bptt_reaches_the_first_step_unless_detached_or_reset(core):
    model = agent(core)
    no_reset = torch.zeros(T, B, dtype=torch.bool)
    through_time = last_step_gradient(model, no_reset)
    assert (through_time > 0).all()
    model.bptt = False   # the authors' fast weight cores: every step's state arrives without gradient
    detached = last_step_gradient(model, no_reset)
    assert detached[-1] > 0 and (detached[:-1] == 0).all()
    model.bptt = True    # an episode starting at step 2 cuts the gradient to the steps before it
    reset = no_reset.clone()
    reset[2] = True
    cut = last_step_gradient(model, reset)
    assert (cut[:2] == 0).all() and (cut[2:] > 0).all()


@pytest.mark.parametrize("bptt", [True, False])
@pytest.mark.parametrize("core", CORES)
def test_an_unroll_cut_in_two_gives_the_whole(core, bptt):
    """Large encoder; the second call starts at step 2, where row 0 starts an episode."""
    model = agent(core, "large", bptt=bptt)
    frames, reward, done = unroll()
    with torch.no_grad():
        logits, baseline, state = model(frames, reward, done)
        first = model(frames[:2], reward[:2], done[:2])
        second = model(frames[2:], reward[2:], done[2:], first[2])
    torch.testing.assert_close(torch.cat([first[0], second[0]]), logits)
    torch.testing.assert_close(torch.cat([first[1], second[1]]), baseline)
    torch.testing.assert_close(flat(second[2]), flat(state))


@pytest.mark.parametrize("core", CORES)
def test_done_forgets_the_previous_episode(core):
    """From a step where every row starts an episode on, the outputs are those of a fresh start there."""
    model = agent(core)
    frames, reward, done = unroll(steps=T)
    done[2] = True
    with torch.no_grad():
        logits, baseline, state = model(frames, reward, done)
        fresh = model(frames[2:], reward[2:], done[2:])
    torch.testing.assert_close(logits[2:], fresh[0])
    torch.testing.assert_close(baseline[2:], fresh[1])
    torch.testing.assert_close(flat(state), flat(fresh[2]))


@pytest.mark.parametrize("core", CORES)
def test_detached_steps_compute_the_same_values(core):
    model = agent(core)
    frames, reward, done = unroll(seed=2)
    with torch.no_grad():
        together = model(frames, reward, done)
        model.bptt = False
        stepwise = model(frames, reward, done)
    torch.testing.assert_close(stepwise[:2], together[:2])
    torch.testing.assert_close(flat(stepwise[2]), flat(together[2]))


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def test_encoder_parameters_by_hand():
    """Espeholt et al. Fig. 3: stages of 16, 32, 32 channels (one conv and two residual blocks of two convs each),
    Linear 3872 → 256; the shallow net 8×8/4 to 16, 4×4/2 to 32, Linear 2592 → 256."""
    large = sum(conv(i, o, 3) + 4 * conv(o, o, 3) for i, o in ((4, 16), (16, 32), (32, 32))) + 3872 * 256 + 256
    shallow = conv(4, 16, 8) + conv(16, 32, 4) + 2592 * 256 + 256
    heads = CORE_INPUT * (A + 1) + A + 1
    assert parameter_count(AtariAgent(A, "feedforward")) == large + heads
    assert parameter_count(AtariAgent(A, "feedforward", encoder="shallow")) == shallow + heads


def test_parameter_counts_round_to_the_papers():
    """Table 7's caption (1.1 M feed-forward, 1.6 M LSTM, 1.5 M LT / Delta Net / RDN, 1.6 M Delta RNN) with 6
    actions (App. C's Amidar and James Bond), and the larger RDN's (Sec. 4.4, "3.4 M"): each of our counts rounds
    to the paper's at 0.1 M."""
    for core, config, ours, paper in parameter_table(A):
        print(f"{core:20s} d_model {config.d_model:3d} d_ff {config.d_ff:4d}: ours {ours / 1e6:.3f} M, paper {paper} M")
        assert abs(ours / 1e6 - paper) < 0.05, core


@pytest.mark.parametrize("core", CORES)
def test_shapes(core):
    model = agent(core)
    frames, reward, done = unroll()
    logits, baseline, state = model(frames, reward, done)
    assert logits.shape == (T, B, A) and baseline.shape == (T, B)
    if core == "feedforward":
        assert state is None
    if core == "lstm":
        assert [s.shape for s in state] == [(1, B, 256)] * 2


def test_reward_is_clipped_and_read():
    """The previous step's reward reaches the heads, clipped to [-1, 1] as in torchbeast's net."""
    model = agent("feedforward")
    frames, _, done = unroll()
    with torch.no_grad():
        logits = {r: model(frames, torch.full((T, B), r), done)[0] for r in (0.5, 1.0, 7.0)}
    assert torch.equal(logits[1.0], logits[7.0]) and not torch.equal(logits[0.5], logits[1.0])


def test_errors():
    with pytest.raises(ValueError, match="unknown core 'gru'.*'feedforward', 'lstm', 'linear_transformer'"):
        AtariAgent(A, "gru")
    with pytest.raises(ValueError, match=r"unknown encoder 'deep'.*\('large', 'shallow'\)"):
        AtariAgent(A, "lstm", encoder="deep")
    model = agent("delta_net")
    frames, reward, done = unroll()
    for bad in (frames[0], frames[:, :, :3], frames[..., :80], frames.float()):
        with pytest.raises(ValueError, match=r"frames must be uint8 of shape \(T, B, 4, 84, 84\)"):
            model(bad, reward, done)
    with pytest.raises(ValueError, match="reward must have the shape"):
        model(frames, reward.T, done)
    with pytest.raises(ValueError, match="done must be a bool tensor"):
        model(frames, reward, done.float())
    with pytest.raises(ValueError, match="done must be a bool tensor"):
        model(frames, reward, done[:1])


def test_the_delta_rnn_core_reads_queries_and_keys_through_a_softmax_as_the_authors_rl_code():
    from rfwp.feature_maps import FeatureMap
    maps = {core: {m.name for m in AtariAgent(A, core).modules() if isinstance(m, FeatureMap)}
            for core in ("delta_rnn", "delta_net")}
    assert maps["delta_rnn"] >= {"softmax"} and "elu" not in maps["delta_rnn"] and maps["delta_net"] == {"elu"}
