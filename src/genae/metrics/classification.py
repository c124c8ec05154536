"""Classification metrics, as plain functions other models (M2, AAE) call on their predictions,
and the registered `conditional_accuracy` built on them. Clustering accuracy (Hungarian
one-to-one matching, or majority class per cluster when there are more clusters than classes)
lives in `genae.scores`.
"""

from __future__ import annotations

import numpy as np
import torch

from genae.data.memory import seeded_generator
from genae.errors import ConfigError
from genae.metrics.registry import EvalContext, Result, register_metric
from genae.models.base import (
    GenerativeModel,
    Reconstructs,
    Relabels,
    TemperedPrior,
    check_temperature,
    tempered_sample,
)


def _as_numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.int64).ravel()


def accuracy(predicted: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Share of predictions equal to the labels."""
    predicted, labels = _as_numpy(predicted), _as_numpy(labels)
    if predicted.shape != labels.shape or not len(labels):
        raise ValueError(
            f"accuracy: expected as many predictions as labels, got {len(predicted)} and "
            f"{len(labels)}"
        )
    return float((predicted == labels).mean())


def confusion_matrix(
    predicted: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    num_classes: int | None = None,
    num_predicted: int | None = None,
) -> np.ndarray:
    """Counts (num_classes, num_predicted): row = true label, column = prediction (or cluster)."""
    predicted, labels = _as_numpy(predicted), _as_numpy(labels)
    rows = num_classes or int(labels.max()) + 1
    cols = num_predicted or max(rows, int(predicted.max()) + 1)
    matrix = np.zeros((rows, cols), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


# --- registered metrics ---------------------------------------------------------------------


def sampling_about(model: GenerativeModel, temperature: float) -> dict[str, object]:
    """How generated images were drawn, for `computed_on`: the prior (standard N(0, I) or
    learned p(z|y)) and the temperature, for a model with a Gaussian prior; else nothing."""
    if not isinstance(model, TemperedPrior):
        return {}
    return {"prior": model.prior_kind, "temperature": temperature}


@torch.no_grad()
def generate_for_classes(
    model: GenerativeModel,
    per_class: int,
    num_classes: int,
    generator: torch.Generator,
    batch: int = 500,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` samples of each class (images, labels), generated in batches."""
    labels = torch.arange(num_classes, device=model.device).repeat_interleave(per_class)
    images = [
        tempered_sample(model, len(chunk), chunk, generator, temperature)
        for chunk in labels.split(batch)
    ]
    return torch.cat(images), labels


@register_metric("conditional_accuracy")
def conditional_accuracy(ctx: EvalContext) -> Result:
    """Share of the images generated for class y that the domain classifier labels y
    (options.samples in all, the same number for each class; from p(z|y) for a learned prior,
    at options.temperature). The same images are also judged by the second domain classifier
    (`conditional_accuracy_second_judge`): a generator trained against a classifier of its own
    (convvae's label_consistency_weight) could learn features that one network reads as the
    class and another does not; an independent judge that agrees rules that out."""
    model = ctx.model
    if not model.is_conditional or not model.spec.num_classes:
        raise ConfigError(
            f"metric 'conditional_accuracy': model '{model.name}' is not class-conditional"
        )
    temperature = ctx.options.temperature
    check_temperature(model, temperature)
    judge = ctx.judge()
    k = model.spec.num_classes
    per_class = max(1, ctx.options.samples // k)
    model.eval()
    images, labels = generate_for_classes(
        model, per_class, k, seeded_generator(ctx.options.seed, 31), temperature=temperature
    )
    predicted = judge.predict(images)
    hits = (predicted == labels).float().view(k, per_class).mean(1)
    second = ctx.second_judge()
    second_hits = (second.predict(images) == labels).float().view(k, per_class).mean(1)
    values = {
        "conditional_accuracy": float(hits.mean()),
        "conditional_accuracy_second_judge": float(second_hits.mean()),
    }
    about = {
        "samples": per_class * k,
        **sampling_about(model, temperature),
        "per_class": [round(float(h), 4) for h in hits],
        "classifier": judge.id,
        "second_judge_per_class": [round(float(h), 4) for h in second_hits],
        "second_classifier": second.id,
    }
    ceiling = judged_reconstruction_accuracy(ctx, judge)
    if ceiling is not None:
        values["reconstruction_judged_accuracy"] = ceiling[0]
        about["reconstruction_judged_per_class"] = ceiling[1]
        # What sampling loses beside what the decoder can draw at all: 1 when prior samples
        # are judged as often right as reconstructions of real images with their true label.
        if ceiling[0] > 0:
            values["conditional_accuracy_of_ceiling"] = values["conditional_accuracy"] / ceiling[0]
    result = Result(values, about)
    relabelled = judged_relabel_accuracy(ctx, judge, second)
    if relabelled is not None:
        images, ((first, first_per_class), (other, other_per_class)) = relabelled
        values["relabel_accuracy"], values["relabel_accuracy_second_judge"] = first, other
        # the test images, not the prior samples: a record of their own
        relabel_about = {
            "split": ctx.split,
            "images": images,
            "new_class": "each image's class + 1, 2, ..., K - 1 in turn (mod K)",
            "per_class": first_per_class,
            "classifier": judge.id,
            "second_judge_per_class": other_per_class,
            "second_classifier": second.id,
        }
        for key in ("relabel_accuracy", "relabel_accuracy_second_judge"):
            result.about_each[key] = relabel_about
    return result


def per_class_shares(hit: torch.Tensor, labels: torch.Tensor, k: int) -> list[float]:
    """The mean of `hit` (1 right, 0 wrong) over the examples of each class present, rounded."""
    return [round(float(hit[labels == c].mean()), 4) for c in range(k) if (labels == c).any()]


def _test_pairs(ctx: EvalContext):
    """Test batches with class labels, or None when the split has none."""
    if ctx.test.labels is None or ctx.test.labels.dim() != 1:
        return None
    return ctx.test.batches(1000)


@torch.no_grad()
def judged_relabel_accuracy(
    ctx: EvalContext, *judges
) -> tuple[int, list[tuple[float, list[float]]]] | None:
    """Share of test images re-generated under another class (`model.relabel(x, y')`, the CAAE
    paper's use: same code, new label) that each judge labels with the new class. Every image
    gets a different class, cycling through the K - 1 others. Returns the number of images and,
    for each judge, the share overall and per new class; None for a model that does not
    relabel."""
    model = ctx.model
    batches = _test_pairs(ctx)
    if not isinstance(model, Relabels) or batches is None:
        return None
    k, hits, targets, seen = model.spec.num_classes, [[] for _ in judges], [], 0
    for batch in batches:
        offset = 1 + (torch.arange(seen, seen + len(batch.y), device=batch.y.device) % (k - 1))
        target = (batch.y + offset) % k
        relabelled = model.relabel(batch.x, target)
        for judge_hits, judge in zip(hits, judges, strict=True):
            judge_hits.append((judge.predict(relabelled).cpu() == target.cpu()).float())
        targets.append(target.cpu())
        seen += len(target)
    target = torch.cat(targets)
    scores = []
    for judge_hits in hits:
        hit = torch.cat(judge_hits)
        scores.append((float(hit.mean()), per_class_shares(hit, target, k)))
    return seen, scores


@torch.no_grad()
def judged_reconstruction_accuracy(ctx: EvalContext, judge) -> tuple[float, list[float]] | None:
    """Share of test reconstructions (decoded from the posterior mean, with the true label) that
    the judge labels correctly, overall and per class; None for models that do not reconstruct.

    The ceiling of conditional_accuracy for this decoder: if the judge cannot tell the class of
    a reconstruction made with the right label, the decoder's images are too coarse for it, and
    generated images will not do better. Separates "blurry" from "ignores its label"."""
    model = ctx.model
    batches = _test_pairs(ctx)
    if not isinstance(model, Reconstructs) or batches is None:
        return None
    predicted, labels = [], []
    for batch in batches:
        predicted.append(judge.predict(model.reconstruct(batch.x, batch.y)))
        labels.append(batch.y)
    hit = torch.cat(predicted).cpu() == torch.cat(labels).cpu()
    y = torch.cat(labels).cpu()
    k = model.spec.num_classes
    return float(hit.float().mean()), per_class_shares(hit.float(), y, k)
