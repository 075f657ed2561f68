"""The adaptive input and softmax of the language models (RFWP App. A.1; Grave et al. 2017, Transformer-XL's
div_val 1): normalised log-probabilities equal to a plain two-level softmax, tying, gradients, the targets-only
NLL, bad cutoffs, the preset's cutoffs, and the parameter counts of RFWP Tables 1 and 4 at WikiText-103's size."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rfwp import MODELS, ModelConfig, build_model
from rfwp.models import TABLE1_MODELS, AdaptiveSoftmax
from rfwp.tasks.language_modelling.presets import WIKITEXT103_CUTOFFS, WIKITEXT103_VOCABULARY, lm_small_config
from rfwp.tasks.language_modelling.tables import unused_authors_parameters

VOCAB = 50
CLUSTERS = [(10, 20), (20, 40), (40, 50)]  # the tail clusters of cutoffs (10, 20, 40), written out
TINY = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=16, dropout=0.0, vocab_size=VOCAB, tie_embeddings=True,
                   adaptive_cutoffs=(10, 20, 40), implementation="reference")


def build(config: ModelConfig = TINY, name: str = "delta_net") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, config).double()


def tokens(B=2, L=9, seed=0):
    return torch.randint(0, VOCAB, (B, L), generator=torch.Generator().manual_seed(seed))


def targets_in_every_cluster(B=2, L=9):
    """Targets with words of the shortlist and of every tail cluster."""
    t = tokens(B, L, seed=1)
    t[0, :4] = torch.tensor([3, 15, 33, 47])
    return t


def test_log_probabilities_are_normalised_at_every_position():
    log_p, _ = build()(tokens())
    assert log_p.shape == (2, 9, VOCAB)
    torch.testing.assert_close(log_p.logsumexp(-1), torch.zeros(2, 9, dtype=torch.float64), rtol=0, atol=1e-12)
    # so the training loss (cross-entropy on the logits) is the NLL of these probabilities
    torch.testing.assert_close(log_p.log_softmax(-1), log_p, rtol=0, atol=1e-12)


def test_equals_a_plain_head_then_cluster_softmax():
    """p(w) = p_head(w) for the shortlist, p_head(cluster i) · softmax within cluster i for a tail word, with
    word vectors U (the embedding), word biases b and cluster vectors/biases (V, c)."""
    model = build()
    x = tokens()
    log_p, _ = model(x)
    h, _ = model.features(x)
    U, b = model.input.embed.weight, model.head.words.bias
    V, c = model.head.clusters.weight, model.head.clusters.bias
    expected = torch.empty_like(log_p)
    for i in range(2):
        for t in range(9):
            z = U @ h[i, t] + b                                        # every word's logit
            head = torch.softmax(torch.cat([z[:10], V @ h[i, t] + c]), dim=0)
            p = torch.empty(VOCAB, dtype=torch.float64)
            p[:10] = head[:10]
            for k, (start, end) in enumerate(CLUSTERS):
                p[start:end] = head[10 + k] * torch.exp(z[start:end]) / torch.exp(z[start:end]).sum()
            expected[i, t] = p.log()
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-10)


def test_output_word_vectors_are_the_embedding():
    model = build()
    assert model.head.words.weight is model.input.embed.weight
    assert model.head.words.weight.data_ptr() == model.input.embed.weight.data_ptr()
    # counted once: the tied model has exactly the untied one's parameters less one vocabulary × d_model matrix
    untied = build(replace(TINY, tie_embeddings=False))
    assert untied.head.words.weight is not untied.input.embed.weight
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - count == VOCAB * TINY.d_model


def test_gradients_reach_every_parameter():
    model = build()
    nll, _ = model.nll(tokens(), targets_in_every_cluster())
    nll.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # every tail cluster with a target trains its words' vectors (the tied embedding rows)
    for start, end in CLUSTERS:
        assert (model.input.embed.weight.grad[start:end].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("adaptive", [True, False])
def test_nll_of_targets_equals_the_gathered_log_probabilities(adaptive):
    """Also for a plain softmax, whose logits are not normalised (hence log_softmax, the identity otherwise)."""
    model = build(TINY if adaptive else replace(TINY, adaptive_cutoffs=None))
    x, y = tokens(), targets_in_every_cluster()
    logits, state = model(x)
    log_p = logits.log_softmax(-1)
    nll, nll_state = model.nll(x, y)
    torch.testing.assert_close(nll, -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(nll, F.cross_entropy(log_p.transpose(1, 2), y, reduction="none"), rtol=0, atol=1e-12)
    torch.testing.assert_close(nll_state, state, rtol=0, atol=0)
    # and the same gradients as cross-entropy on forward's output (the training loss)
    grad = torch.autograd.grad(nll.sum(), list(model.parameters()))
    logits, _ = model(x)
    expected = torch.autograd.grad(F.cross_entropy(logits.transpose(1, 2), y, reduction="sum"),
                                   list(model.parameters()))
    for g, e in zip(grad, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_nll_computes_only_the_clusters_of_its_targets():
    """With every target in the shortlist no tail word is scored: their output biases get no gradient, while
    cross-entropy on the full log-probabilities gives every word one."""
    model = build()
    x, y = tokens(), torch.randint(0, 10, (2, 9), generator=torch.Generator().manual_seed(2))
    nll, _ = model.nll(x, y)
    nll.sum().backward()
    bias = model.head.words.bias
    assert (bias.grad[:10] != 0).all() and (bias.grad[10:] == 0).all()
    bias.grad = None
    log_p, _ = model(x)
    F.cross_entropy(log_p.transpose(1, 2), y, reduction="sum").backward()
    assert (bias.grad != 0).all()


@pytest.mark.parametrize("cutoffs", [(20, 10, 40), (10, 10, 40), (0, 10), (10, 20, 50), (10, 20, 60), (),
                                     [10, 20], (10.0, 20)])
def test_bad_cutoffs(cutoffs):
    with pytest.raises(ValueError, match="adaptive_cutoffs must be a non-empty tuple of strictly increasing"):
        replace(TINY, adaptive_cutoffs=cutoffs)


def test_adaptive_softmax_needs_the_vocabulary_as_outputs():
    with pytest.raises(ValueError, match="adaptive_cutoffs needs token inputs with n_outputs equal to vocab_size"):
        build_model("delta_net", replace(TINY, tie_embeddings=False, n_outputs=VOCAB + 1))
    with pytest.raises(ValueError, match="adaptive_cutoffs is implemented for the sequence models"):
        build_model("lstm", TINY)


def test_nll_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"targets must have the shape \(batch, length\) = \(2, 9\)"):
        build().nll(tokens(), tokens().flatten())


def test_preset_keeps_the_cutoffs_below_the_vocabulary():
    assert WIKITEXT103_CUTOFFS == (20000, 40000, 200000)
    assert lm_small_config("delta_net", WIKITEXT103_VOCABULARY).adaptive_cutoffs == (20000, 40000, 200000)
    assert lm_small_config("delta_net", 33278).adaptive_cutoffs == (20000,)   # WikiText-2's vocabulary
    small = lm_small_config("delta_net", 20000)
    assert small.adaptive_cutoffs is None and small.tie_embeddings
    with torch.device("meta"):
        assert isinstance(build_model("delta_net", lm_small_config("delta_net", WIKITEXT103_VOCABULARY)).head,
                          AdaptiveSoftmax)
        assert isinstance(build_model("delta_net", small).head, torch.nn.Linear)


TABLE4 = [("delta_rnn", "A", 44.6), ("delta_lstm", "A", 47.3), ("delta_lstm", "B", 47.3), ("delta_lstm", "C", 47.3),
          ("delta_mlp", "A", 44.3)]


@pytest.mark.parametrize("name, version, paper", [(name, None, MODELS[name].table1_params) for name in TABLE1_MODELS]
                         + TABLE4)
def test_wikitext103_parameter_counts_match_tables_1_and_4(name, version, paper):
    """RFWP Table 1 "#Prms" (millions) and Table 4's versions, with the adaptive input/softmax at WikiText-103's
    vocabulary: equal at the paper's precision (0.1 M). The Delta MLP counts the authors' unused projection."""
    config = lm_small_config(name, WIKITEXT103_VOCABULARY, version)
    with torch.device("meta"):
        count = sum(p.numel() for p in build_model(name, config).parameters())
    if name == "delta_mlp":
        count += unused_authors_parameters(name, config)
    assert round(count / 1e6, 1) == paper
