"""The Python API in PyTorch's habits: `model(x)` on every model, `genae.save` / `genae.load`,
`fit(data=...)` with a torch Dataset or DataLoader, and errors that name the API's arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

import genae
from genae.cli import main
from genae.data.sources import load_dataset
from genae.data.torch_datasets import from_torch
from genae.data.types import DataSpec
from genae.errors import CheckpointError, ConfigError, DataError
from genae.models import MODELS, build_model
from genae.models.base import Reconstructs

SPEC = DataSpec(shape=(1, 8, 8), num_classes=10, class_names=tuple("0123456789"))
TINY = {"hidden": [16], "latent_dim": 2}
QUICK = {"epochs": 1, "batch_size": 100, "progress": False, "snapshot_epochs": []}


# --- model(x) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_calling_a_model_gives_what_its_family_documents(name):
    torch.manual_seed(0)
    model = build_model(name, {}, SPEC).eval()
    x, y = torch.rand(4, *SPEC.shape), torch.arange(4)
    out = model(x, y) if model.needs_labels else model(x)
    if name == "classifier":
        assert out.shape == (4, SPEC.num_classes)  # logits
    else:  # every autoencoder reconstructs
        assert out.shape == x.shape
        assert float(out.detach().min()) >= 0.0 and float(out.detach().max()) <= 1.0
    if isinstance(model, Reconstructs):
        expected = model.reconstruct(x, y) if model.needs_labels else model.reconstruct(x)
        torch.testing.assert_close(out, expected)
    # differentiable, like any nn.Module's forward
    out.float().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_conditional_model_asks_for_the_labels():
    model = build_model("caae", {}, SPEC).eval()
    with pytest.raises(ValueError, match="label"):
        model(torch.rand(2, *SPEC.shape))


# --- genae.save / genae.load ----------------------------------------------------------------------


def test_save_and_load_round_trip_a_model_built_by_hand(tmp_path):
    torch.manual_seed(0)
    model = build_model("aae", {"hidden": [16], "disc_hidden": [8]}, SPEC).eval()
    genae.save(model, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = genae.load(tmp_path / "model")
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config and loaded.spec == model.spec
    state, again = model.state_dict(), loaded.state_dict()
    assert state.keys() == again.keys()
    for key in state:
        assert torch.equal(state[key], again[key]), key
    x = torch.rand(3, *SPEC.shape)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    genae.save(loaded, tmp_path / "model")  # an earlier save may be overwritten


def test_save_and_load_round_trip_a_model_trained_by_fit(tmp_path):
    digits = load_dataset("digits")
    run = genae.fit("vae", model_config=TINY, train_config=QUICK, data=digits)
    genae.save(run.model, tmp_path / "vae")
    loaded = genae.load(tmp_path / "vae")
    x = digits.train.images[:5].float() / 255
    torch.testing.assert_close(loaded(x), run.model(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"model: expected a genae model .*run\.model"):
        genae.save(run, tmp_path / "run")


def test_save_refuses_a_directory_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="holds other files"):
        genae.save(build_model("vae", TINY, SPEC), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- fit(data=torch Dataset / DataLoader) ---------------------------------------------------------


class Pairs(Dataset):
    """(image, label) pairs, as a user's Dataset would give them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, kind: str = "float") -> None:
        self.images, self.labels, self.kind = images, labels, kind

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.kind == "float":  # what ToTensor gives
            image = image.float() / 255
        elif self.kind == "pil":
            image = Image.fromarray(image[0].numpy(), mode="L")
        return image, int(self.labels[index])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_fit_trains_on_a_torch_dataset_and_test_data(digits):
    train, test = digits.train, digits.test.unseal()
    run = genae.fit(
        "vae",
        model_config=TINY,
        train_config=QUICK,
        data=Pairs(train.images, train.labels),
        test_data=Pairs(test.images, test.labels),
    )
    assert run.data.name == "Pairs"
    assert run.data.spec.shape == (1, 8, 8) and run.data.spec.num_classes == 10
    assert torch.equal(run.data.train.images, train.images)
    assert torch.equal(run.data.train.labels, train.labels)
    assert any(key.startswith("test_") for key in run.history[-1])


@pytest.mark.parametrize("kind", ["float", "uint8", "pil"])
def test_a_dataset_or_loader_of_any_image_kind_reads_the_same(digits, kind):
    train, test = digits.train, digits.test.unseal()
    dataset = Pairs(train.images[:300], train.labels[:300], kind)
    loader = DataLoader(dataset, batch_size=32, shuffle=True)  # genae batches by itself
    for data in (dataset, loader):
        splits = from_torch(data, Pairs(test.images[:50], test.labels[:50], kind))
        assert torch.equal(splits.train.images, train.images[:300])
        assert torch.equal(splits.train.labels, train.labels[:300])


def test_without_test_data_a_tenth_is_held_out_the_same_way_every_time(digits):
    dataset = TensorDataset(digits.train.images[:200], digits.train.labels[:200])
    first, second = from_torch(dataset), from_torch(dataset)
    assert len(first.train) == 180 and len(first.test.unseal()) == 20
    assert torch.equal(first.test.unseal().images, second.test.unseal().images)


class Items(Dataset):
    def __init__(self, *items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


IMAGE = torch.rand(1, 8, 8)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([(IMAGE, 1)], "data: expected a torch Dataset of (image, label) pairs"),
        (np.zeros((3, 8, 8)), "data: expected a torch Dataset"),
        (Items((IMAGE, 1), (torch.rand(1, 8, 9), 2)), "data: item 1: image of shape (1, 8, 9)"),
        (Items((IMAGE, 1.0), (IMAGE, 2)), "data: item 0: label 1.0 is a float"),
        (Items((IMAGE, torch.tensor([0.5])), (IMAGE, 2)), "data: item 0: label is a torch.float32"),
        (Items((IMAGE, -1), (IMAGE, 2)), "data: item 0: label -1; expected a class index >= 0"),
        (Items((IMAGE * 2 - 1, 0), (IMAGE, 2)), "leave out a Normalize transform"),
        (Items((IMAGE, 0), IMAGE), "data: item 1: no label, but item 0 is an (image, label)"),
        (Items((IMAGE, 0, 1), (IMAGE, 2)), "data: item 0 has 3 parts"),
        (Items(("picture", 0), (IMAGE, 2)), "data: item 0: the image is a str"),
        (Items((torch.rand(8, 8, 3), 0), (IMAGE, 2)), "looks channels-last"),
        (Items((IMAGE, 0)), "data: expected at least 2 items to hold out a test split"),
    ],
)
def test_bad_torch_data_is_a_one_line_error_naming_data(data, fragment):
    with pytest.raises(DataError) as caught:
        genae.fit("vae", model_config=TINY, train_config=QUICK, data=data)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_test_data_must_match_data(digits):
    data = Items((IMAGE, 0), (IMAGE, 1))
    with pytest.raises(DataError, match=r"test_data: images of shape \(1, 4, 4\)"):
        from_torch(data, Items((torch.rand(1, 4, 4), 0)))
    with pytest.raises(DataError, match="test_data: only with a torch Dataset"):
        genae.fit("vae", train_config=QUICK, data=digits, test_data=data)


# --- errors name the caller's arguments -----------------------------------------------------------


def test_fit_errors_name_fit_arguments_and_the_cli_names_its_flags(tmp_path, digits, capsys):
    run_dir = tmp_path / "run"
    genae.fit("vae", model_config=TINY, train_config=QUICK, data=digits, run_dir=run_dir)
    with pytest.raises(CheckpointError) as caught:
        genae.fit("vae", model_config=TINY, train_config=QUICK, data=digits, run_dir=run_dir)
    assert "pass resume=True to continue it or force=True to overwrite it" in str(caught.value)
    with pytest.raises(ConfigError, match=r"resume: needs a run directory \(run_dir\)"):
        genae.fit("vae", train_config=QUICK, data=digits, resume=True)

    args = ["train", "vae", "--dataset", "digits", "--epochs", "1", "--hidden", "16"]
    assert main([*args, "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert main([*args, "--out", str(tmp_path / "cli"), "--no-progress"]) == 2
    assert "pass --resume to continue it or --force to overwrite it" in capsys.readouterr().err
