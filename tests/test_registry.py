"""Every registered model, by construction: it builds, trains through `genae.api.fit`, saves,
loads back with the same weights, samples (if generative) and resumes exactly. A new model is
covered without editing this file.

Each model gets its default config with the sizes below shrunk. The settings are keyed by config
field name, not by model name, so a new model that uses the common names (hidden, latent_dim,
...) is small here without an entry; one with new size fields trips the parameter budget, whose
message says what to add. (Small configs declared on the model classes would be the
alternative; they would put test settings into the package, and a model without one would still
need a fallback here.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import genae
from genae.api import fit
from genae.data.sources import load_dataset
from genae.data.types import DatasetSplits
from genae.models import MODELS, GenerativeModel, build_model
from genae.training.rundir import WEIGHTS_FILE

# A config field of this name gets this value, in every model that has one.
SMALL_SETTINGS: dict[str, Any] = {
    # widths of the networks
    "hidden": (32,),
    "disc_hidden": (16,),
    "classifier_hidden": (16,),
    "z_disc_hidden": (8,),
    "encoder_channels": (8,),
    "stage_channels": (8,),
    "block_channels": (8,),
    "img_disc_channels": (4,),
    "label_classifier_channels": (4,),
    "feature_width": 16,
    "latent_dim": 2,
    # helper networks trained before the model (M1 of M1+M2, DFC-VAE's feature classifier)
    "m1_hidden": (16,),
    "m1_latent_dim": 2,
    "m1_epochs": 1,
    "feature_epochs": 1,
    # DFC-VAE: its own classifier as the feature network, not VGG19 weights from the internet
    "features": "classifier",
}
# With SMALL_SETTINGS applied; at default sizes most models have millions. (CAAE's image
# discriminator has a fixed 1024-wide head: ~230k of its parameters, but cheap on 8x8 images.)
PARAMETER_BUDGET = 300_000

TRAIN = {
    "seed": 0,
    "batch_size": 50,
    "max_train_examples": 200,  # of digits' 1437: 4 steps an epoch
    "snapshot_epochs": (),
    "progress": False,
    # "1 epoch resumed to 2 is the 2-epoch run" needs a schedule that does not depend on the
    # number of epochs (a cosine one, M2's default, anneals to the end of the run it is in).
    "lr_schedule": "constant",
    # This checks the plumbing, not learning: two tiny epochs of an adversarial game may collapse.
    "stop_on_collapse": False,
}
LABEL_BUDGET = {"labels": 50, "labelled_batch_size": 10}  # semi-supervised: 5 labels a class


def small_config(config_class: type) -> dict[str, Any]:
    """SMALL_SETTINGS for the fields that `config_class` has."""
    names = {field.name for field in dataclasses.fields(config_class)}
    return {name: value for name, value in SMALL_SETTINGS.items() if name in names}


def train_config(model: GenerativeModel, epochs: int) -> dict[str, Any]:
    """The run's settings; a semi-supervised model trains with a label budget."""
    labels = LABEL_BUDGET if model.semi_supervised else {}
    return {**TRAIN, **labels, "epochs": epochs}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"weights differ: {different}"


def without_timings(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if not k.endswith("_per_s")} for record in history]


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


# Model options that change what a model is (its networks, what generation takes): each goes
# through the same checks as a model of its own.
VARIANTS = {
    "convvae-conditional": ("convvae", {"conditional": True}),
    "convvae-conditional-learned-prior": ("convvae", {"conditional": True, "prior": "learned"}),
    "cvae-standard-prior": ("cvae", {"prior": "standard"}),
}


@pytest.mark.parametrize(
    ("name", "options"),
    [pytest.param(name, {}, id=name) for name in sorted(MODELS)]
    + [pytest.param(name, options, id=key) for key, (name, options) in VARIANTS.items()],
)
def test_every_model_trains_saves_loads_samples_and_resumes_exactly(
    name: str,
    options: dict[str, Any],
    digits: DatasetSplits,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))  # helper networks' cache
    model_config = {**small_config(MODELS[name].config_class), **options}
    model = build_model(name, model_config, digits.spec)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters <= PARAMETER_BUDGET, (
        f"model '{name}' has {parameters} parameters with {model_config} (budget "
        f"{PARAMETER_BUDGET}); add its size fields to SMALL_SETTINGS"
    )

    # builds and trains, and saves into its run directory
    full = fit(
        name,
        model_config=model_config,
        train_config=train_config(model, epochs=2),
        data=digits,
        run_dir=tmp_path / "full",
    )
    assert [record["epoch"] for record in full.history] == [1, 2]

    # loads back with the same weights
    loaded = genae.load(tmp_path / "full")
    assert type(loaded) is MODELS[name]
    assert_same_weights(full.model.state_dict(), loaded.state_dict())

    if loaded.generative:
        condition = None
        if loaded.is_conditional:
            condition = torch.arange(loaded.spec.num_classes)
        n = loaded.spec.num_classes
        images = loaded.sample(n, condition, generator=torch.Generator().manual_seed(0))
        assert images.shape == (n, *loaded.spec.shape)
        assert images.min() >= 0 and images.max() <= 1

    # 1 epoch, resumed to 2, is the 2-epoch run
    fit(
        name,
        model_config=model_config,
        train_config=train_config(model, epochs=1),
        data=digits,
        run_dir=tmp_path / "resumed",
    )
    resumed = fit(
        name, train_config={"epochs": 2}, data=digits, run_dir=tmp_path / "resumed", resume=True
    )
    assert_same_weights(
        load_file(tmp_path / "full" / WEIGHTS_FILE), load_file(tmp_path / "resumed" / WEIGHTS_FILE)
    )
    assert without_timings(resumed.history) == without_timings(full.history)
