"""Feature maps of ICML Sec. 5 against their defining properties."""
import math

import pytest
import torch

from rfwp.feature_maps import FeatureMap, dpfp, elu_plus_one, favor_plus, orthogonal_gaussian


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_plus_one_is_elu_plus_one_and_stays_positive(dtype):
    x = torch.linspace(-60, 20, 161, dtype=dtype, requires_grad=True)
    phi = elu_plus_one(x)
    assert (phi > 0).all()
    torch.testing.assert_close(phi, (torch.nn.functional.elu(x.double()) + 1).to(dtype), atol=1e-7, rtol=1e-6)
    (grad,) = torch.autograd.grad(phi.sum(), x)
    torch.testing.assert_close(grad, torch.where(x > 0, 1.0, phi.detach()))


def test_dpfp_partial_functions_in_2d_are_the_four_quadrants():
    """ICML Eqs. 33-36: one non-zero feature per quadrant, so points of different quadrants are orthogonal."""
    points = torch.tensor([[1.0, 2.0], [-1.0, 2.0], [1.0, -2.0], [-1.0, -2.0]])
    phi = dpfp(points, nu=1)
    assert phi.shape == (4, 4)
    assert ((phi > 0).sum(-1) == 1).all()
    gram = phi @ phi.T
    torch.testing.assert_close(gram - torch.diag(gram.diag()), torch.zeros(4, 4))


@pytest.mark.parametrize("d, nu", [(3, 1), (8, 2), (16, 3)])
def test_dpfp_dimension_is_2_d_nu(d, nu):
    assert dpfp(torch.randn(5, d), nu).shape == (5, 2 * d * nu)
    assert FeatureMap("dpfp", d_key=d, nu=nu).d_dot == 2 * d * nu


@pytest.mark.parametrize("nu", [0, 8])
def test_dpfp_rejects_nu_out_of_range(nu):
    """At construction and at the call: ν from 1 to 2·d_key − 1."""
    with pytest.raises(ValueError, match=rf"DPFP needs 1 <= nu < 2\*d_key = 8, got nu={nu}"):
        FeatureMap("dpfp", d_key=4, nu=nu)
    with pytest.raises(ValueError, match=rf"DPFP needs 1 <= nu < 2\*d_key = 8, got nu={nu}"):
        dpfp(torch.randn(2, 4), nu)


def test_orthogonal_features_are_orthogonal_within_a_block():
    w = orthogonal_gaussian(8, 8, torch.Generator().manual_seed(0), dtype=torch.float64)
    gram = w @ w.T
    torch.testing.assert_close(gram - torch.diag(gram.diag()), torch.zeros(8, 8, dtype=torch.float64))


def test_favor_plus_is_an_unbiased_softmax_kernel_estimate():
    """E[φ(x)·φ(y)] = exp(x·y) (Choromanski et al., 2021); checked with many random features."""
    g = torch.Generator().manual_seed(0)
    x, y = 0.3 * torch.randn(2, 4, generator=g, dtype=torch.float64)
    feats = orthogonal_gaussian(200_000, 4, g, dtype=torch.float64)
    estimate = favor_plus(x, feats) @ favor_plus(y, feats)
    assert math.isclose(estimate.item(), math.exp(x @ y), rel_tol=0.02)


def test_favor_redraws_in_training_and_is_fixed_in_eval():
    phi = FeatureMap("favor", d_key=4, m=8, normalisation="none")
    x = torch.randn(3, 4)
    phi.train()
    drawn = phi.features.clone()
    a = phi(x)
    assert not torch.equal(phi.features, drawn)
    torch.testing.assert_close(a, favor_plus(x, phi.features))
    b = phi(x)
    assert not torch.allclose(a, b)
    phi.eval()
    fixed = phi.features.clone()
    for _ in range(2):
        torch.testing.assert_close(phi(x), favor_plus(x, fixed))
    assert torch.equal(phi.features, fixed)


def test_queries_and_keys_share_one_favor_draw():
    phi = FeatureMap("favor", d_key=4, m=8, normalisation="none").train()
    x, y = torch.randn(2, 3, 4).unbind(0)
    fq, fk = phi(x, y)
    torch.testing.assert_close(fq, favor_plus(x, phi.features))
    torch.testing.assert_close(fk, favor_plus(y, phi.features))


@pytest.mark.parametrize("name", ["elu", "dpfp", "favor", "softmax"])
def test_sum_normalisation_makes_components_sum_to_one(name):
    phi = FeatureMap(name, d_key=6, nu=2, m=5, normalisation="sum")
    torch.testing.assert_close(phi(torch.randn(7, 6)).sum(-1), torch.ones(7))


def test_unknown_names_and_wrong_sizes_raise():
    with pytest.raises(ValueError, match="unknown feature map"):
        FeatureMap("relu")
    with pytest.raises(ValueError, match="unknown normalisation"):
        FeatureMap("elu", normalisation="layer")
    with pytest.raises(ValueError, match="d_key=6"):
        FeatureMap("elu", d_key=6)(torch.randn(2, 5))
