"""Fréchet distance between generated and real images, in the domain classifier's feature space.

    FID = ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))

with means and covariances of the classifier's penultimate-layer features (Heusel et al. 2017
use Inception features; for small grey-scale datasets a classifier trained on the dataset itself
is the usual stand-in, so numbers are comparable only between runs judged by the same
classifier, whose id is stored with every value).

`fid` is reported twice: under the dataset's judge (`fid`) and under its second judge
(`fid_second_judge`: another architecture, trained independently with another seed), the same
samples and test images in both feature spaces; a gain that shows in one only is a gain in that
classifier's features, not in the images (a DFC-VAE's feature loss is itself a classifier's).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from genae.data.memory import seeded_generator
from genae.metrics.classification import generate_for_classes, sampling_about
from genae.metrics.registry import EvalContext, Result, register_metric
from genae.models.base import check_temperature, tempered_sample


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of feature rows, in float64."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    diff = mean_a - mean_b
    with warnings.catch_warnings():
        # Dead ReLU units make feature covariances singular; sqrtm warns but is still accurate
        # on the non-singular part, and a non-finite result is handled below.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        # Near-singular product (fewer samples than dimensions): a tiny ridge makes it usable.
        ridge = np.eye(len(cov_a)) * 1e-6
        root = scipy.linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge))
    # Rounding leaves tiny imaginary parts on a product of PSD matrices; the value is real.
    root = np.real(root)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def fid_from_features(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


@torch.no_grad()
def generated_images(
    model,
    n: int,
    generator: torch.Generator,
    attributes: torch.Tensor | None = None,
    batch: int = 500,
    temperature: float = 1.0,
) -> torch.Tensor:
    """n samples. A class-conditional model gets the same number of each class; an
    attribute-conditional one the attribute vectors of `attributes` (e.g. the test split's),
    cycled. A model with a Gaussian prior draws at `temperature`."""
    k = model.spec.num_classes
    if model.is_conditional and k and not model.spec.attribute_names:
        return generate_for_classes(model, max(1, n // k), k, generator, batch, temperature)[0]
    conditions = None
    if model.is_conditional and attributes is not None:
        conditions = attributes.repeat((n + len(attributes) - 1) // len(attributes), 1)[:n]
    images = []
    for start in range(0, n, batch):
        c = None if conditions is None else conditions[start : start + batch]
        images.append(tempered_sample(model, min(batch, n - start), c, generator, temperature))
    return torch.cat(images)


@register_metric("fid")
def fid(ctx: EvalContext) -> Result:
    """FID of options.samples generated images against the whole test split, under the domain
    classifier (`fid`) and under the second one (`fid_second_judge`). Generated images are the
    decoder's means; on a --binarize run those are Bernoulli means (pixel probabilities), so
    they are compared with the test images' grey levels (the probabilities its binarisation
    draws from), not with the binarised test images."""
    temperature = ctx.options.temperature
    check_temperature(ctx.model, temperature)
    judges = {"fid": ctx.judge(), "fid_second_judge": ctx.second_judge()}
    ctx.model.eval()
    gen = seeded_generator(ctx.options.seed, 37)
    fake = generated_images(
        ctx.model, ctx.options.samples, gen, ctx.test.labels, temperature=temperature
    )
    binarized = ctx.test_grey is not None
    reference = ctx.test_grey if binarized else ctx.test
    real = torch.cat([b.x for b in reference.batches(1000)])
    values = {
        name: fid_from_features(judge.features(fake), judge.features(real))
        for name, judge in judges.items()
    }
    compared = (
        "Bernoulli means vs grey-level held-out images (the run binarises; both are pixel "
        "probabilities)"
        if binarized
        else "generated means vs grey-level held-out images"
    )
    return Result(
        values,
        {
            "split": ctx.split,
            "examples": len(real),
            "samples": len(fake),
            **sampling_about(ctx.model, temperature),
            "classifier": judges["fid"].id,
            "second_classifier": judges["fid_second_judge"].id,
            "compared": compared,
        },
    )
