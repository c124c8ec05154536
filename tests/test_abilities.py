"""Optional model abilities (`genae.models.base`: latent codes, a prior, categories, reconstruct,
relabel, log-weights, a tempered Gaussian prior) are declared by inheritance; every registered
model's declarations hold."""

import pytest
import torch

from genae.data.types import DataSpec
from genae.models import MODELS, build_model
from genae.models.base import (
    Batch,
    Categories,
    LatentCodes,
    LatentPrior,
    LogWeights,
    Reconstructs,
    Relabels,
    TemperedPrior,
)

SPEC = DataSpec(shape=(1, 8, 8), num_classes=10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_abilities_work(name):
    torch.manual_seed(0)
    model = build_model(name, {}, SPEC).eval()
    x, y = torch.rand(4, *SPEC.shape), torch.arange(4)
    if model.generative:  # every generative model here decodes from a latent
        assert isinstance(model, LatentCodes)
    if isinstance(model, LatentCodes):
        assert model.latent_codes(x, y).shape == (4, model.latent_dim)
    if isinstance(model, LatentPrior):
        assert model.latent_prior.dim == model.latent_dim
    if isinstance(model, Categories):
        assigned = model.assign(x)
        assert assigned.shape == (4,) and int(assigned.max()) < model.num_categories
    if isinstance(model, Reconstructs):
        assert model.reconstruct(x, y).shape == x.shape
    if isinstance(model, Relabels):
        assert model.relabel(x, (y + 1) % 10).shape == x.shape
    if isinstance(model, LogWeights):
        assert model.log_weights(Batch(x, y), 3).shape == (4, 3)
    if isinstance(model, TemperedPrior):
        eps = torch.randn(4, model.latent_dim)
        condition = y if model.is_conditional else None
        assert model.prior_codes(eps, condition, 0.5).shape == (4, model.latent_dim)
        assert isinstance(model.prior_kind, str)


def test_an_ability_declared_but_not_provided_cannot_be_built():
    class Broken(Relabels):
        pass

    with pytest.raises(TypeError, match="relabel"):
        Broken()
