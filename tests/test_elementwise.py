"""genae.nn.elementwise: the fast softplus and Bernoulli NLL agree with torch's own."""

import torch
import torch.nn.functional as F

from genae.nn.elementwise import Softplus, bernoulli_nll, softplus


def test_softplus_matches_torch_from_far_negative_to_far_positive():
    x = torch.cat([torch.linspace(-100, 100, 20_001), torch.tensor([0.0, -1e-8, 1e-8, 88.0])])
    exact = F.softplus(x.double(), threshold=1000).float()
    torch.testing.assert_close(softplus(x), exact, rtol=1e-6, atol=1e-7)
    assert softplus(torch.tensor(-200.0)) >= 0 and softplus(torch.tensor(200.0)) == 200.0


def test_softplus_gradient_is_the_sigmoid_and_differentiable_twice():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True) * 5
    x.retain_grad()
    (grad,) = torch.autograd.grad(softplus(x).sum(), x, create_graph=True)
    torch.testing.assert_close(grad, torch.sigmoid(x))
    assert torch.autograd.gradcheck(softplus, (x.detach().requires_grad_(),))
    assert torch.autograd.gradgradcheck(softplus, (x.detach().requires_grad_(),))


def test_softplus_layer_has_no_weights_so_saved_models_load_either_way():
    assert list(Softplus().state_dict()) == list(torch.nn.Softplus().state_dict()) == []


def test_bernoulli_nll_is_binary_cross_entropy_with_logits_and_its_gradient():
    torch.manual_seed(0)
    logits = (torch.randn(30, 40) * 8).requires_grad_()
    target = torch.cat([torch.bernoulli(torch.rand(15, 40)), torch.rand(15, 40)])
    ours = bernoulli_nll(logits, target)
    theirs = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(g_ours, g_theirs)
