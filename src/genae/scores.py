"""Clustering accuracy: how well unsupervised cluster assignments recover the classes. Pure
numerical scores, shared by the models that report them (M2, AAE) and by the metrics.

With as many clusters as classes, clusters are matched one-to-one to classes by the assignment
that maximises agreement (the Hungarian algorithm, scipy's `linear_sum_assignment`). With more
clusters than classes (the AAE paper's 16 or 30 clusters for 10 classes) a one-to-one match
would leave clusters unlabelled, so each cluster takes its majority class (many-to-one), as in
Makhzani et al. (2015, sec. 6). The same rule scores every method, baselines included.
"""

from __future__ import annotations

import numpy as np
import torch


def contingency(assignments: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """counts[c, k]: examples of cluster c with class k."""
    a = assignments.detach().cpu().long().numpy()
    y = labels.detach().cpu().long().numpy()
    counts = np.zeros((int(a.max()) + 1, int(y.max()) + 1), dtype=np.int64)
    np.add.at(counts, (a, y), 1)
    return counts


def cluster_to_class(assignments: torch.Tensor, labels: torch.Tensor) -> dict[int, int]:
    """The class each (non-empty) cluster stands for: one-to-one when there are no more clusters
    than classes, else each cluster's majority class."""
    from scipy.optimize import linear_sum_assignment  # heavy, needed only when scoring

    counts = contingency(assignments, labels)
    used = np.flatnonzero(counts.sum(1))
    if len(used) <= counts.shape[1]:
        rows, cols = linear_sum_assignment(-counts[used])
        return {int(used[r]): int(c) for r, c in zip(rows, cols)}
    return {int(c): int(counts[c].argmax()) for c in used}


def clustering_accuracy(assignments: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of examples whose cluster's class (see `cluster_to_class`) is their own."""
    mapping = cluster_to_class(assignments, labels)
    counts = contingency(assignments, labels)
    hits = sum(counts[c, k] for c, k in mapping.items())
    return float(hits) / len(labels)


_KMEANS_CACHE: dict[tuple, float] = {}
KMEANS_FIT_EXAMPLES = 10_000  # training images k-means is fit on (a seeded sample)


def kmeans_baseline(
    fit_images: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    seed: int = 0,
    *,
    binarize_fit: bool = False,
) -> float:
    """Clustering accuracy on `images` (uint8, scored with `labels`) of k-means (scikit-learn,
    k-means++ with 3 restarts) fit on raw pixels of `fit_images`, the training images (a seeded
    sample of at most KMEANS_FIT_EXAMPLES): the baseline an unsupervised clustering model must
    beat, never fit on the images it is scored on. binarize_fit: binarise the sample once
    (seeded), for a model that trains on binarised pixels. Cached per pair of splits, since
    training evaluates the same validation split after every epoch."""
    from sklearn.cluster import KMeans  # heavy, needed only for the k-means baseline

    generator = torch.Generator().manual_seed(seed)
    fit = fit_images.detach().cpu().flatten(1)
    if len(fit) > KMEANS_FIT_EXAMPLES:
        fit = fit[torch.randperm(len(fit), generator=generator)[:KMEANS_FIT_EXAMPLES]]
    scored = images.detach().cpu().flatten(1)
    key = (
        tuple(fit.shape),
        int(fit.sum()),
        tuple(scored.shape),
        int(scored.sum()),
        int(labels.sum()),
        k,
        seed,
        binarize_fit,
    )
    if key not in _KMEANS_CACHE:
        x = fit.float().div(255.0)
        if binarize_fit:
            x = torch.bernoulli(x, generator=generator)
        fitted = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x.numpy())
        predicted = fitted.predict(scored.float().div(255.0).numpy())
        _KMEANS_CACHE[key] = clustering_accuracy(torch.from_numpy(predicted), labels)
    return _KMEANS_CACHE[key]
