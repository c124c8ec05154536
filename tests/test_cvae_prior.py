"""The conditional VAE's learned prior p(z|y) = N(mu(y), sigma^2(y)) (Sohn et al. 2015) and the
sampling temperature z = mu(y) + T sigma(y) eps (issue 15).

The KL between two diagonal Gaussians is checked against torch.distributions and a hand
computation; the learned prior against what its KL term must do (move to each class's codes);
sampling through the API, `genae sample` and `genae evaluate`.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import Independent, Normal, kl_divergence

import genae
from genae.cli import main
from genae.data.sources import from_arrays
from genae.data.types import Batch, DataSpec
from genae.errors import ConfigError
from genae.metrics import MetricOptions
from genae.models import build_model
from genae.models.base import TemperedPrior, check_temperature
from genae.nn.blocks import standard_normal
from genae.nn.divergences import (
    kl_normal_diag,
    kl_normal_diag_units,
    kl_normal_standard,
    kl_normal_standard_units,
)
from genae.viz.grids import sample_grid

TWO_CLASSES = DataSpec((1, 8, 8), num_classes=2)


# --- the divergence ---------------------------------------------------------------------------


def test_kl_between_diagonal_gaussians_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    lv1, lv2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    q = Normal(m1, (0.5 * lv1).exp())
    p = Normal(m2, (0.5 * lv2).exp())
    torch.testing.assert_close(kl_normal_diag_units(m1, lv1, m2, lv2), kl_divergence(q, p))
    torch.testing.assert_close(
        kl_normal_diag(m1, lv1, m2, lv2), kl_divergence(Independent(q, 1), Independent(p, 1))
    )


def test_kl_between_diagonal_gaussians_by_hand() -> None:
    # KL(N(1, 1) || N(0, 4)) = 0.5 (log 4 - log 1 + (1 + (1 - 0)^2) / 4 - 1) = 0.5 (ln 4 - 0.5)
    one = torch.tensor([[1.0]])
    kl = kl_normal_diag(one, torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([[math.log(4)]]))
    assert float(kl) == pytest.approx(0.5 * (math.log(4) - 0.5))


def test_kl_against_a_standard_normal_is_the_standard_kl() -> None:
    g = torch.Generator().manual_seed(1)
    mean, log_var = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    zero = torch.zeros_like(mean)
    torch.testing.assert_close(
        kl_normal_diag_units(mean, log_var, zero, zero), kl_normal_standard_units(mean, log_var)
    )
    torch.testing.assert_close(
        kl_normal_diag(mean, log_var, zero, zero), kl_normal_standard(mean, log_var)
    )


# --- the model --------------------------------------------------------------------------------


def small_cvae(prior: str, spec: DataSpec = TWO_CLASSES):
    torch.manual_seed(0)
    return build_model("cvae", {"hidden": [16], "latent_dim": 2, "prior": prior}, spec)


def test_the_learned_prior_is_the_default_but_runs_saved_before_it_keep_theirs(tmp_path) -> None:
    assert build_model("cvae", {}, TWO_CLASSES).config.prior == "learned"
    from genae.config import to_mapping
    from genae.training import rundir

    model = small_cvae("standard")
    rundir.save_model(model, tmp_path / "old")
    config_file = tmp_path / "old" / rundir.CONFIG_FILE
    saved = json.loads(config_file.read_text())
    del saved["model_config"]["prior"]  # as written before the field existed
    config_file.write_text(json.dumps(saved))
    loaded = rundir.load(tmp_path / "old")
    assert loaded.config.prior == "standard"
    assert to_mapping(loaded.config) == to_mapping(model.config)


def test_the_standard_prior_draws_plain_normal_noise() -> None:
    model = small_cvae("standard").eval()
    assert model.prior_net is None and model.prior_kind == "standard N(0, I)"
    assert not any("prior" in key for key in model.state_dict())
    y = torch.tensor([0, 1, 1])
    expected = model.generate(
        standard_normal((3, 2), torch.Generator().manual_seed(5), model.device), y
    )
    drawn = model.sample(3, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(drawn, expected)
    # its KL is the closed form against N(0, I)
    x = torch.rand(3, *TWO_CLASSES.shape)
    mean, log_var = model.encode(x, model.condition_vector(y))
    torch.manual_seed(0)
    kl = model.loss(Batch(x, y))["kl"]
    torch.testing.assert_close(kl, kl_normal_standard(mean, log_var).mean())


def test_a_prior_other_than_standard_or_learned_is_refused() -> None:
    with pytest.raises(ConfigError, match="prior: expected standard | learned"):
        build_model("cvae", {"prior": "mixture"}, TWO_CLASSES)


def test_the_learned_prior_starts_as_the_standard_normal_and_enters_the_kl() -> None:
    model = small_cvae("learned").eval()
    assert isinstance(model, TemperedPrior) and model.prior_kind == "learned p(z|y)"
    mean, log_var = model.prior_net(model.condition_vector(torch.arange(2)))
    assert torch.equal(mean, torch.zeros(2, 2)) and torch.equal(log_var, torch.zeros(2, 2))
    with torch.no_grad():
        model.prior_net.head.mean.bias.fill_(1.0)
    x, y = torch.rand(3, *TWO_CLASSES.shape), torch.tensor([0, 1, 1])
    q_mean, q_log_var = model.encode(x, model.condition_vector(y))
    kl = model.loss(Batch(x, y))["kl"]
    ones = torch.ones_like(q_mean)
    torch.testing.assert_close(
        kl, kl_normal_diag(q_mean, q_log_var, ones, torch.zeros_like(q_mean)).mean()
    )


def test_the_learned_prior_moves_onto_each_class_codes() -> None:
    """With the posterior held at N(m_k, s^2) for class k, minimising the loss over the prior
    alone must give p(z|k) = N(m_k, s^2): the KL term pulls each class's prior onto its codes."""
    model = small_cvae("learned")
    codes = torch.tensor([[2.0, -1.0], [-1.5, 0.5]])  # class 0's, class 1's posterior mean
    log_s2 = math.log(0.25)

    def encode(x, c):
        mean = c @ codes
        return mean, torch.full_like(mean, log_s2)

    model.encode = encode
    optimiser = torch.optim.Adam(model.prior_net.parameters(), lr=0.05)
    y = torch.arange(8) % 2
    x = torch.rand(8, *TWO_CLASSES.shape)
    for _ in range(400):
        optimiser.zero_grad()
        model.loss(Batch(x, y))["loss"].backward()
        optimiser.step()
    mean, log_var = model.prior_net(model.condition_vector(torch.arange(2)))
    torch.testing.assert_close(mean, codes, atol=0.02, rtol=0)
    torch.testing.assert_close(log_var, torch.full((2, 2), log_s2), atol=0.02, rtol=0)
    # samples for class k are drawn around class k's codes
    z = model.prior_sample(
        500, torch.Generator().manual_seed(0), condition=torch.zeros(500, dtype=torch.long)
    )
    assert (z - codes[0]).norm(dim=1).mean() < (z - codes[1]).norm(dim=1).mean() / 3


def separable_data():
    """Two classes of 8x8 images: the left half bright, or the right half."""
    rng = np.random.default_rng(0)
    n = 600
    labels = np.arange(n) % 2
    images = rng.uniform(0, 0.3, (n, 8, 8))
    images[labels == 0, :, :4] += 0.6
    images[labels == 1, :, 4:] += 0.6
    return from_arrays(images.astype(np.float32), labels, class_names=("left", "right"))


@pytest.fixture(scope="module")
def trained_learned_cvae(tmp_path_factory: pytest.TempPathFactory):
    data = separable_data()
    run = genae.fit(
        "cvae",
        model_config={"hidden": [32], "latent_dim": 2, "prior": "learned"},
        train_config={
            "epochs": 10,
            "batch_size": 50,
            "lr": 3e-3,
            "seed": 0,
            "progress": False,
            "snapshot_epochs": (),
        },
        data=data,
        run_dir=tmp_path_factory.mktemp("learned") / "run",
    )
    return run.model.eval(), data


def test_a_learned_prior_trained_on_two_classes_samples_each_class_where_its_codes_are(
    trained_learned_cvae,
) -> None:
    model, data = trained_learned_cvae
    x = torch.as_tensor(data.train.images).float() / 255
    y = torch.as_tensor(data.train.labels)
    codes = model.latent_codes(x, y)
    centroids = torch.stack([codes[y == k].mean(0) for k in range(2)])
    with torch.no_grad():
        prior_means, _ = model.prior_net(model.condition_vector(torch.arange(2)))
    # the classes' priors differ, each nearer its own class's codes than the other's
    assert (prior_means[0] - prior_means[1]).norm() > 0.2
    for k in range(2):
        distances = (centroids - prior_means[k]).norm(dim=1)
        assert distances[k] < distances[1 - k], (k, prior_means, centroids)
    # prior samples of class k lie nearer class k's codes, and decode to class k's images
    means = torch.stack([x[y == k].mean(0) for k in range(2)])
    for k in range(2):
        label = torch.full((200,), k)
        z = model.prior_sample(200, torch.Generator().manual_seed(k), condition=label)
        to_codes = [(z - centroids[j]).norm(dim=1).mean() for j in range(2)]
        assert to_codes[k] < to_codes[1 - k]
        images = model.generate(z, label)
        to_images = [(images - means[j]).pow(2).mean() for j in range(2)]
        assert to_images[k] < to_images[1 - k]


def test_temperature_zero_gives_the_prior_mean_and_temperature_scales_the_spread(
    trained_learned_cvae,
) -> None:
    model, _ = trained_learned_cvae
    y = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        mean, log_var = model.prior_net(model.condition_vector(y))
    a = model.sample(4, y, generator=torch.Generator().manual_seed(1), temperature=0.0)
    b = model.sample(4, y, generator=torch.Generator().manual_seed(2), temperature=0)
    assert torch.equal(a, b) and torch.equal(a, model.generate(mean, y))
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for t in (0.5, 1.0, 2.0):
            z = model.prior_codes(eps, y, t)
            torch.testing.assert_close(z - mean, t * (0.5 * log_var).exp() * eps)
    # under the standard prior, temperature scales plain noise
    standard = small_cvae("standard")
    assert torch.equal(standard.prior_codes(eps, y, 0.0), torch.zeros(4, 2))
    assert torch.equal(standard.prior_codes(eps, y, 0.5), 0.5 * eps)
    assert standard.prior_codes(eps, y) is eps


def test_the_learned_prior_needs_the_labels(trained_learned_cvae) -> None:
    model, _ = trained_learned_cvae
    with pytest.raises(ValueError, match="label"):
        model.prior_sample(3)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "hot", True])
def test_a_bad_temperature_is_a_config_error_naming_it(trained_learned_cvae, bad) -> None:
    model, _ = trained_learned_cvae
    with pytest.raises(ConfigError, match="^temperature: expected a number >= 0"):
        model.sample(2, torch.tensor([0, 1]), temperature=bad)
    with pytest.raises(ConfigError, match="^temperature: expected a number >= 0"):
        MetricOptions(temperature=bad).validate()


def test_a_model_without_a_gaussian_prior_takes_temperature_1_only() -> None:
    aae = build_model("aae", {}, DataSpec((1, 8, 8), num_classes=10)).eval()
    assert not isinstance(aae, TemperedPrior)
    check_temperature(aae, 1.0)
    with pytest.raises(ConfigError, match="^temperature: model 'aae' has no Gaussian prior"):
        check_temperature(aae, 0.5)
    with pytest.raises(ConfigError, match="^temperature: model 'aae' has no Gaussian prior"):
        sample_grid(aae, 8, temperature=0.5)


def test_a_learned_prior_cvae_saves_and_loads(trained_learned_cvae, tmp_path: Path) -> None:
    model, _ = trained_learned_cvae
    genae.save(model, tmp_path / "saved")
    loaded = genae.load(tmp_path / "saved")
    assert loaded.config.prior == "learned"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    y = torch.tensor([0, 1])
    assert torch.equal(
        model.sample(2, y, generator=torch.Generator().manual_seed(0), temperature=0.7),
        loaded.sample(2, y, generator=torch.Generator().manual_seed(0), temperature=0.7),
    )


# --- the command line -------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int | str | None, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch learned-prior cvae run on the embedded digits."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "cvae", "--dataset", "digits", "--epochs", "2", "--hidden", "32"]
    args += ["--latent-dim", "2", "--prior", "learned", "--no-progress", "--out", str(run_dir)]
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(args) == 0, err.getvalue()
    assert json.loads((run_dir / "config.json").read_text())["model_config"]["prior"] == "learned"
    return run_dir


@pytest.mark.parametrize("command", ["sample", "evaluate"])
@pytest.mark.parametrize("value", ["-1", "hot", "nan", ""])
def test_a_bad_temperature_flag_exits_2_with_one_line_naming_it(
    capsys, learned_run: Path, tmp_path: Path, command: str, value: str
) -> None:
    out = ["--out", tmp_path / "x.png"] if command == "sample" else []
    code, stdout, err = cli(capsys, command, learned_run, f"--temperature={value}", *out)
    assert code == 2 and stdout == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("genae: error: argument --temperature: expected a number >= 0"), err
    assert not (tmp_path / "x.png").exists()


def test_genae_sample_at_temperature_zero_repeats_each_class_prior_mean(
    capsys, learned_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    code, _, err = cli(capsys, "sample", learned_run, "--temperature", "0", "--out", out)
    assert code == 0, err
    assert Image.open(out).size[0] > 0
    code, _, err = cli(
        capsys, "sample", learned_run, "--label", "3", "--temperature", "0.5", "--out", out
    )
    assert code == 0, err
    # the class grid it draws: one row per class, each column its class's prior mean decoded
    model = genae.load(learned_run)
    images, per_row = sample_grid(model, temperature=0.0)
    rows = images.view(model.spec.num_classes, per_row, -1)
    assert torch.equal(rows, rows[:, :1].expand_as(rows))
    assert not torch.equal(rows[0, 0], rows[1, 0])
    labels = torch.arange(model.spec.num_classes)
    with torch.no_grad():
        means, _ = model.prior_net(model.condition_vector(labels))
    torch.testing.assert_close(rows[:, 0], model.generate(means, labels).flatten(1))


def test_genae_evaluate_records_the_prior_and_temperature_of_conditional_accuracy(
    capsys, learned_run: Path, offline_data
) -> None:
    code, out, err = cli(
        capsys,
        "evaluate",
        learned_run,
        "--metrics",
        "conditional_accuracy",
        "--samples",
        "200",
        "--temperature",
        "0.5",
        "--json",
    )
    assert code == 0, err
    about = json.loads(out)["computed_on"]["conditional_accuracy"]
    assert about["prior"] == "learned p(z|y)" and about["temperature"] == 0.5
