"""Published reference numbers ("anchors") that reports show beside ours.

Only numbers whose setting is close enough to ours to be worth a look are kept, each with its
source and the setting that differs, so a reader can judge the comparison. Keyed by
(model, dataset, metric); values in the units genae reports (nats per image, accuracy shares).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    value: float
    source: str
    setting: str


ANCHORS: dict[tuple[str, str, str], Anchor] = {
    ("vae", "mnist", "iw_nll"): Anchor(
        86.76,
        "Burda et al. 2016, table 1",
        "dynamically binarised MNIST, 1 stochastic layer of 50 units, k = 5000",
    ),
    ("m2", "mnist", "accuracy"): Anchor(
        1 - 0.1197, "Kingma et al. 2014, table 1", "100 labels; M2 alone"
    ),
    ("m1m2", "mnist", "accuracy"): Anchor(
        1 - 0.0333, "Kingma et al. 2014, table 1", "100 labels; M1+M2"
    ),
    ("aae-cluster", "mnist", "clustering_accuracy"): Anchor(
        1 - 0.0955, "Makhzani et al. 2015, table 3", "16 clusters, majority label per cluster"
    ),
    ("classifier", "fashion-mnist", "accuracy"): Anchor(
        0.92, "genae target for the domain classifier", "small CNN, 10 epochs"
    ),
    ("classifier", "mnist", "accuracy"): Anchor(
        0.99, "genae target for the domain classifier", "small CNN, 10 epochs"
    ),
}


def anchor_for(model: str, dataset: str, metric: str) -> Anchor | None:
    return ANCHORS.get((model, dataset, metric))
