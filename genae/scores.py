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


def kmeans_baseline(images: torch.Tensor, labels: torch.Tensor, k: int, seed: int = 0) -> float:
    """Clustering accuracy of k-means (scikit-learn, k-means++ with 3 restarts) on raw pixels,
    the baseline an unsupervised clustering model must beat. Cached per split, since training
    evaluates on the same test split after every epoch."""
    from sklearn.cluster import KMeans  # heavy, needed only for the k-means baseline

    pixels = images.detach().cpu().flatten(1)
    key = (tuple(pixels.shape), int(pixels.sum()), int(labels.sum()), k, seed)
    if key not in _KMEANS_CACHE:
        x = pixels.float().div(255.0).numpy()
        fitted = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
        _KMEANS_CACHE[key] = clustering_accuracy(torch.from_numpy(fitted.labels_), labels)
    return _KMEANS_CACHE[key]
