"""Metric registry: name -> function of an evaluation context.

Two kinds of metric exist. A model's own per-example metrics (whatever its `evaluate(batch)`
returns: `neg_elbo`, `recon_mse`, `accuracy`, ...) are averaged over the test split by the
trainer's `evaluate` and are always available by name. The metrics registered here need more
than one forward pass per example (importance sampling, generated samples, a domain classifier)
and are computed only when asked for.

Every result carries what it was computed on (`Result.about`: split, example and sample counts,
k, the domain classifier's id), and `evaluate_run` stores it beside the number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genae.config import require
from genae.data.memory import TensorData
from genae.metrics.judge import domain_classifier
from genae.models.base import GenerativeModel, require_temperature


@dataclass
class MetricOptions:
    """Knobs of the costly metrics (each result records the values it used)."""

    iw_samples: int = 1000
    """k of the importance-weighted bound (iw_nll): importance samples per test image."""
    samples: int = 10_000
    """Generated images for fid, conditional_accuracy and the like."""
    batch_size: int = 100
    """Test examples per importance-sampling batch."""
    seed: int = 0
    """Seed of the metrics' random draws (importance samples, generated images)."""
    temperature: float = 1.0
    """T of generated z = mean + T std eps (fid, conditional_accuracy): 1 the prior, 0 its mean."""

    def validate(self) -> None:
        require(self.iw_samples >= 1, "iw_samples", "an integer >= 1", self.iw_samples)
        require(self.samples >= 2, "samples", "an integer >= 2", self.samples)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require_temperature(self.temperature)


@dataclass
class EvalContext:
    """What a metric may use: the model, the test split, and how to reach the domain classifiers.

    test: the test split as the model is evaluated on it (binarised once, for a --binarize run).
    test_grey: for a --binarize run, the same images as grey levels, i.e. the probabilities the
    binarisation drew from: what a model's Bernoulli means compare with like for like.
    """

    model: GenerativeModel
    test: TensorData
    dataset: str
    options: MetricOptions = field(default_factory=MetricOptions)
    data_dir: Path | None = None
    test_grey: TensorData | None = None
    split: str = "test"
    """Which split `test` holds: "test", or "validation" when choosing between runs."""
    _judge: Any = None
    _second_judge: Any = None

    def judge(self):
        """The dataset's domain classifier (trained and cached on first use)."""
        if self._judge is None:
            self._judge = domain_classifier(
                self.dataset, data_dir=self.data_dir, device=str(self.test.device)
            )
        return self._judge

    def second_judge(self):
        """The dataset's second domain classifier, FID's cross-check: another architecture and
        seed (trained and cached on first use; only metrics that ask for it ever do)."""
        if self._second_judge is None:
            self._second_judge = domain_classifier(
                self.dataset, data_dir=self.data_dir, device=str(self.test.device), which="second"
            )
        return self._second_judge


@dataclass
class Result:
    values: dict[str, float]  # name -> number, stored in the run's evaluation
    about: dict[str, Any]  # what the numbers were computed on
    # a value computed on something else than the rest (other images, another count): its own
    # record, which replaces `about` for that value
    about_each: dict[str, dict[str, Any]] = field(default_factory=dict)


MetricFn = Callable[[EvalContext], Result]
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator: make a metric function available to `genae evaluate --metrics NAME`."""

    def add(fn: MetricFn) -> MetricFn:
        METRICS[name] = fn
        return fn

    return add
