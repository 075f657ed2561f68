"""Every model by name: the state contract (split = whole, resets), one training step, the registry,
the paper configurations' parameter counts, and errors for bad input."""
from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import torch

from rfwp import ATARI_LARGE, ATARI_SMALL, CODE_EXECUTION, LM_SMALL, MODELS, ModelConfig, build_model
from rfwp.models import detach_state

from oracle import map_state, poisoned

VOCAB = 7
TINY = ModelConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, dropout=0.0, vocab_size=VOCAB, lstm_hidden=8,
                   lstm_layers=2, implementation="reference")
USES_PHI = ("linear_transformer", "delta_net", "delta_mlp", "delta_delta_net", "delta_rnn", "delta_lstm")
CASES = [(name, variant) for name in MODELS
         for variant in (("elu", "dpfp", "favor") if name in USES_PHI else ("elu",))]
# also positions on a fast weight model (as in LM_SMALL) and a memory-limited Transformer
CASES += [("delta_net", "positions"), ("transformer", "memory")]


def config_for(variant: str) -> ModelConfig:
    """TINY with a feature map by name, or with positions, or with a limited attention memory."""
    if variant == "positions":
        return replace(TINY, positional_encoding=True)
    if variant == "memory":
        return replace(TINY, memory=3)
    return replace(TINY, feature_map=variant, nu=2)


def build(name: str, config: ModelConfig = TINY) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, config).double()


def tensors(state):
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in tensors(s)]


def tokens(B=3, L=12, seed=0):
    return torch.randint(0, VOCAB, (B, L), generator=torch.Generator().manual_seed(seed))


def resets(B=3, L=12):
    reset = torch.zeros(B, L, dtype=torch.bool)
    reset[0, 0] = reset[1, 5] = reset[1, 9] = reset[2, 2] = True   # at the start, the cut, inside each piece
    return reset


@pytest.mark.parametrize("name, variant", CASES)
@pytest.mark.parametrize("with_reset", [False, True])
def test_split_sequence_equals_whole(name, variant, with_reset):
    """Logits and final state of two calls that carry the state equal those of one call."""
    model = build(name, config_for(variant)).eval()
    x, reset = tokens(), (resets() if with_reset else None)
    logits, final = model(x, reset=reset)
    cut = 5
    part = (lambda s: None) if reset is None else (lambda s: reset[:, s])
    first, state = model(x[:, :cut], reset=part(slice(None, cut)))
    second, split_final = model(x[:, cut:], state, part(slice(cut, None)))
    torch.testing.assert_close(torch.cat([first, second], dim=1), logits)
    assert len(tensors(split_final)) == len(tensors(final))
    for a, b in zip(tensors(split_final), tensors(final)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_reset_forgets_everything_before_it(name):
    model = build(name).eval()
    x = tokens()
    reset = torch.zeros(3, 12, dtype=torch.bool)
    reset[:, 7] = True
    logits, _ = model(x, reset=reset)
    _, state = model(tokens(seed=1))
    other, _ = model(torch.cat([tokens(L=7, seed=2), x[:, 7:]], dim=1), state, reset)
    torch.testing.assert_close(other[:, 7:], logits[:, 7:])


@pytest.mark.parametrize("name", [n for n in MODELS if n != "feedforward"])
def test_reset_overwrites_an_inf_or_nan_state(name):
    """A reset at the first step forgets a carried state full of inf and NaN (0 · inf would be NaN)."""
    model = build(name).eval()
    x = tokens()
    reset = torch.zeros(3, 12, dtype=torch.bool)
    reset[:, 0] = True
    _, state = model(tokens(seed=1))
    logits, final = model(x, reset=reset)
    bad_logits, bad_final = model(x, map_state(poisoned, state), reset)
    torch.testing.assert_close(bad_logits, logits)
    for a, b in zip(tensors(bad_final), tensors(final)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_on_cpu(name):
    """A few Adam steps on one batch of features: every parameter trains and the loss falls, no NaN."""
    torch.manual_seed(0)
    model = build_model(name, replace(TINY, vocab_size=None, d_input=3, n_outputs=4))
    x = torch.randn(4, 10, 3)
    target = torch.randint(0, 4, (4, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(4):
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        optimiser.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_detached_state_keeps_values_and_cuts_the_graph():
    """Truncated BPTT: the second piece's gradient through a detached state is the gradient with the first
    piece computed without a graph, and differs from backpropagating into the first piece."""
    model = build("delta_rnn")
    x = tokens()

    def gradients(first_piece):
        model.zero_grad()
        second, _ = model(x[:, 6:], first_piece())
        second.square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    with torch.no_grad():
        _, state = model(x[:, :6])
    detached = gradients(lambda: detach_state(model(x[:, :6])[1]))
    without_graph = gradients(lambda: state)
    through = gradients(lambda: model(x[:, :6])[1])
    for a, b in zip(detached, without_graph):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(detached, through))
    second, _ = model(x[:, 6:], detach_state(state))
    torch.testing.assert_close(second, model(x)[0][:, 6:])   # the values are kept


def test_lstm_state_is_nn_lstm_state():
    model = build("lstm")
    _, (h, c) = model(tokens())
    assert h.shape == c.shape == (TINY.lstm_layers, 3, TINY.lstm_hidden)


def test_feedforward_model_has_no_memory():
    model = build("feedforward").eval()
    x = tokens()
    logits, state = model(x)
    assert state is None
    torch.testing.assert_close(model(x[:, 4:])[0], logits[:, 4:])


def test_tied_embeddings_share_one_matrix():
    model = build("delta_net", replace(TINY, tie_embeddings=True))
    assert model.head.weight is model.input.embed.weight


# ---------------------------------------------------------------- registry and paper configurations

def test_registry_names_and_full_names():
    assert tuple(MODELS) == ("transformer", "linear_transformer", "delta_net", "delta_mlp", "delta_delta_net",
                             "delta_rnn", "delta_lstm", "recurrent_delta_net", "transformer_xl", "lstm", "feedforward")
    # the three full names RFWP Appendix D spells out
    assert MODELS["delta_rnn"].full_name == "Feedforward/Delta fast RNN"
    assert MODELS["recurrent_delta_net"].full_name == "Recurrent/Delta fast Linear Net"
    assert MODELS["delta_net"].full_name == "Feedforward/Delta fast Linear Net"


def millions(model) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 1)


def test_code_execution_parameter_counts_match_the_paper():
    """RFWP Appendix B.1: Transformer 3.2 M, LSTM (256, embedding 128) 405 K; the 8-layer ablation:
    1.1 M for the Transformer models except the Delta RNN (1.3 M), and LSTM(512) 1.3 M."""
    c = replace(CODE_EXECUTION, vocab_size=24, n_outputs=25)
    assert millions(build_model("transformer", c)) == 3.2
    assert round(sum(p.numel() for p in build_model("lstm", c).parameters()) / 1e3) == 405
    assert millions(build_model("lstm", replace(c, lstm_hidden=512))) == 1.3
    thin = replace(c, n_layers=8, d_model=128, n_heads=8, d_ff=256)
    for name in ("transformer", "linear_transformer", "delta_net", "recurrent_delta_net"):
        assert millions(build_model(name, thin)) == 1.1, name
    assert millions(build_model("delta_rnn", thin)) == 1.3


def test_named_configs():
    assert (CODE_EXECUTION.n_layers, CODE_EXECUTION.d_model, CODE_EXECUTION.n_heads, CODE_EXECUTION.d_ff,
            CODE_EXECUTION.dropout) == (4, 256, 16, 1024, 0.1)
    assert (LM_SMALL.n_layers, LM_SMALL.d_model, LM_SMALL.n_heads, LM_SMALL.d_ff) == (16, 128, 8, 2048)
    assert (ATARI_SMALL.n_layers, ATARI_SMALL.d_model, ATARI_SMALL.n_heads, ATARI_SMALL.d_ff) == (2, 128, 4, 512)
    assert (ATARI_LARGE.n_layers, ATARI_LARGE.d_model, ATARI_LARGE.n_heads) == (4, 256, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        LM_SMALL.d_model = 1  # named configs are frozen: derive new ones with dataclasses.replace


# ---------------------------------------------------------------- bad input

def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'deltanet'.*'delta_net'"):
        build_model("deltanet", TINY)


def test_unknown_feature_map():
    with pytest.raises(ValueError, match="unknown feature_map 'relu'; choose one of"):
        replace(TINY, feature_map="relu")


def test_config_without_inputs_says_how_to_set_them():
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("delta_net", CODE_EXECUTION)


def test_floats_without_feature_axis():
    model = build("delta_net", replace(TINY, vocab_size=None, d_input=1, n_outputs=2))
    with pytest.raises(ValueError, match=r"unsqueeze\(-1\)"):
        model(torch.randn(2, 5, dtype=torch.float64))


def test_floats_to_a_token_model():
    with pytest.raises(ValueError, match="token ids"):
        build("delta_net")(torch.randn(2, 5, 8, dtype=torch.float64))


@pytest.mark.parametrize("name", ["delta_net", "lstm", "feedforward"])
def test_reset_of_wrong_shape(name):
    with pytest.raises(ValueError, match="reset has shape"):
        build(name)(tokens(), reset=torch.zeros(12, 3, dtype=torch.bool))


def test_attention_normalisation_only_where_defined():
    build("delta_net", replace(TINY, normalisation="attention"))
    with pytest.raises(ValueError, match="normalisation='attention'"):
        build("delta_rnn", replace(TINY, normalisation="attention"))


def test_transformer_xl_initialisation():
    """init_std: weights N(0, σ²), LayerNorm weights N(1, σ²), biases 0, the embedding read × √d_model; a tied
    output layer then starts close to the uniform distribution over the vocabulary."""
    config = replace(TINY, d_model=64, n_heads=4, vocab_size=1000, tie_embeddings=True, init_std=0.02)
    model = build("delta_net", config)
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    assert abs(weights.std().item() - 0.02) < 0.002
    norms = torch.cat([m.weight for m in model.modules() if isinstance(m, torch.nn.LayerNorm)])
    assert abs(norms.mean().item() - 1) < 0.01 and 0.01 < norms.std().item() < 0.03
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    x = torch.randint(0, 1000, (2, 9))
    torch.testing.assert_close(model.features(x)[0], build("delta_net", config).features(x)[0])
    targets = torch.randint(0, 1000, (2, 9), generator=torch.Generator().manual_seed(1))
    loss = lambda m: torch.nn.functional.cross_entropy(m.eval()(x)[0].flatten(0, 1), targets.flatten())  # noqa: E731
    uniform = torch.log(torch.tensor(1000.0, dtype=torch.float64))
    assert abs(loss(model) - uniform) < 0.1
    assert loss(build("delta_net", replace(config, init_std=None))) > uniform + 1
