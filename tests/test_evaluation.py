"""The domain classifier cache, registered metrics through `genae evaluate`, `genae experiment`
and `genae report` — the report rendered in headless Chromium.

One short vae-vs-cvae experiment on the embedded digits (2 epochs) is run once for the module,
with the judge cache in a temporary GENAE_DATA_DIR.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from genae.cli import main
from genae.metrics import judge as judge_module


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def assert_user_error(result: Result, *needles: str) -> None:
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genae: error:"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def experiment_args(out) -> list:
    """`genae experiment vae-vs-cvae`, shortened to 2 epochs on digits, into `out`."""
    return [
        "experiment",
        "vae-vs-cvae",
        "--dataset",
        "digits",
        "--out",
        out,
        "--epochs",
        "2",
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """(output dir, first run's result) of `genae experiment vae-vs-cvae` on digits."""
    root = tmp_path_factory.mktemp("evaluation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAE_DATA_DIR", str(root / "cache"))
        out = root / "exp"
        result = cli(*experiment_args(out))
        yield out, result


@pytest.fixture
def cache(experiment, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(experiment[0].parent / "cache"))


def test_experiment_trains_the_judge_once_and_writes_runs_and_report(experiment):
    out, result = experiment
    assert result.code == 0, result.err
    assert "training one" in result.err and f"wrote {out / 'report.html'}" in result.out
    for run in ("vae", "cvae"):
        rows = (out / run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
        # the experiment's snapshots at 1, 5, 10, cut to the 2 epochs asked for
        assert sorted(p.name for p in (out / run / "samples").iterdir()) == [
            "epoch_001.png",
            "epoch_002.png",
        ]
    summary = json.loads((out / "experiment.json").read_text())
    assert summary["experiment"] == "vae-vs-cvae" and summary["dataset"] == "digits"
    assert [c["ok"] is not None for c in summary["expectations"]] == [True, True]


def test_judge_is_cached_and_its_id_recorded(experiment, cache, capsys):
    out, _ = experiment
    judge = judge_module.domain_classifier("digits")
    assert "training" not in capsys.readouterr().err
    weights = judge.run_dir / "model.safetensors"
    assert judge.sha256 == judge_module.weights_sha256(weights)
    # a shared helper run: cache/runs/judge-<dataset>-<key of its recipe and data>
    assert judge.run_dir.parent == out.parent / "cache" / "runs"
    assert judge.run_dir.name.startswith("judge-digits-")
    assert judge.test_accuracy >= judge_module.TARGET_ACCURACY["digits"]
    evaluation = json.loads((out / "cvae" / "evaluation.json").read_text())
    about = evaluation["computed_on"]["conditional_accuracy"]
    assert about["classifier"] == judge.id and about["samples"] == 10_000
    assert 0.0 <= evaluation["conditional_accuracy"] <= 1.0
    assert 0.0 <= evaluation["reconstruction_judged_accuracy"] <= 1.0
    assert len(about["reconstruction_judged_per_class"]) == 10
    # the judge is an ordinary run: genae evaluate works on it
    result = cli("evaluate", judge.run_dir, "--json")
    assert json.loads(result.out)["accuracy"] == pytest.approx(judge.test_accuracy)


def test_reconstruction_ceiling_of_a_perfect_reconstructor_is_the_judges_accuracy(cache):
    """A model whose reconstructions are the inputs themselves: the judge sees the real test
    images, so the ceiling must equal the judge's own test accuracy, class by class."""
    from genae.data.memory import TensorData
    from genae.data.sources import load_dataset
    from genae.metrics.classification import judged_reconstruction_accuracy
    from genae.metrics.registry import EvalContext
    from genae.models.base import Reconstructs

    class Identity(Reconstructs):
        spec = load_dataset("digits").spec

        def reconstruct(self, x, y):
            return x

    test = TensorData(load_dataset("digits").test)
    judge = judge_module.domain_classifier("digits")
    overall, per_class = judged_reconstruction_accuracy(
        EvalContext(Identity(), test, "digits"), judge
    )
    predicted = judge.predict(test.batch(torch.arange(len(test))).x)
    assert overall == pytest.approx(judge.test_accuracy)
    for c in range(10):
        mask = test.labels == c
        assert per_class[c] == pytest.approx((predicted[mask] == c).float().mean().item(), abs=1e-4)


def test_relabel_accuracy_catches_a_generator_that_ignores_the_label(cache):
    """relabel(x, y') must show class y'. A model returning x unchanged ignores the label: the
    judge then sees the original class, never the requested one (score ~0). A model returning a
    real test image of class y' follows the label perfectly (score ~ the judge's accuracy)."""
    from genae.data.memory import TensorData
    from genae.data.sources import load_dataset
    from genae.metrics.classification import judged_relabel_accuracy
    from genae.metrics.registry import EvalContext
    from genae.models.base import Relabels

    test = TensorData(load_dataset("digits").test)
    everything = test.batch(torch.arange(len(test)))
    first_of_class = {c: everything.x[everything.y == c][:1] for c in range(10)}

    class IgnoresLabel(Relabels):
        spec = load_dataset("digits").spec

        def relabel(self, x, y):
            return x

    class FollowsLabel(IgnoresLabel):
        def relabel(self, x, y):
            return torch.cat([first_of_class[int(c)] for c in y])

    judge = judge_module.domain_classifier("digits")
    ignores = judged_relabel_accuracy(EvalContext(IgnoresLabel(), test, "digits"), judge)
    follows = judged_relabel_accuracy(EvalContext(FollowsLabel(), test, "digits"), judge)
    predicted = judge.predict(torch.cat([first_of_class[c] for c in range(10)]))
    assert ignores < 0.05
    assert follows == pytest.approx((predicted == torch.arange(10)).float().mean().item(), abs=0.12)
    assert follows > 0.8


def test_experiment_rerun_reuses_finished_runs(experiment, cache):
    out, _ = experiment
    before = (out / "vae" / "model.safetensors").read_bytes()
    result = cli(*experiment_args(out))
    assert result.code == 0, result.err
    assert result.err.count("reusing") == 2 and "training one" not in result.err
    assert (out / "vae" / "model.safetensors").read_bytes() == before


def test_evaluate_with_registered_metrics(experiment, cache):
    run = experiment[0] / "cvae"
    result = cli(
        "evaluate",
        run,
        "--metrics",
        "neg_elbo,iw_nll,fid,conditional_accuracy",
        "--iw-samples",
        "20",
        "--samples",
        "500",
        "--json",
    )
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["iw_nll"] < report["neg_elbo"]
    assert report["fid"] > 0
    on = report["computed_on"]
    assert on["iw_nll"]["k"] == 20 and on["iw_nll"]["examples"] == 297
    assert on["fid"]["samples"] == 500 and on["fid"]["examples"] == 297
    assert on["fid"]["classifier"] == on["conditional_accuracy"]["classifier"]
    assert on["neg_elbo"]["split"] == "test"
    text = cli("evaluate", run, "--metrics", "iw_nll", "--iw-samples", "5")
    assert text.code == 0 and "iw_nll: split test, examples 297, k 5" in text.out


def test_evaluate_metric_errors_are_one_line(experiment, cache):
    out = experiment[0]
    assert_user_error(cli("evaluate", out / "vae", "--metrics", "fidd"), "fidd", "did you mean")
    assert_user_error(
        cli("evaluate", out / "vae", "--metrics", "conditional_accuracy"), "not class-conditional"
    )
    assert_user_error(
        cli("evaluate", out / "vae", "--metrics", "iw_nll", "--iw-samples", "0"), "iw_samples"
    )


def test_experiment_errors(tmp_path, monkeypatch):
    assert_user_error(cli("experiment", "vae-vs-cvea", "--out", tmp_path), "vae-vs-cvae")
    from genae import experiments

    slot = tmp_path / "defs"
    slot.mkdir()
    (slot / "planned.toml").write_text(
        'name = "planned"\n[[runs]]\nname = "x"\nmodel = "not-yet-a-model"\n'
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", slot)
    assert_user_error(
        cli("experiment", "planned", "--out", tmp_path / "o"), "needs model 'not-yet-a-model'"
    )
    assert not (tmp_path / "o").exists()


def test_claims_compare_runs_bound_values_and_beat_a_baseline_of_the_same_run(tmp_path):
    from genae.claims import Claim, check_claims
    from genae.report import RunInfo

    def run(name, *history):
        config = {"model": "m", "train": {"dataset": "d"}}
        return RunInfo(
            name, tmp_path, config, [dict(epoch=i + 1, **h) for i, h in enumerate(history)]
        )

    runs = {
        "a": run(
            "a", {"loss": 3.0, "acc": 0.5, "kmeans": 0.6}, {"loss": 1.0, "acc": 0.7, "kmeans": 0.6}
        ),
        "b": run("b", {"loss": 2.0, "acc": 0.4}, {"loss": 0.5, "acc": 0.8}),
    }
    claims = [
        {"metric": "loss", "epoch": 1, "lower": "b", "than": "a"},  # 2.0 < 3.0
        {"metric": "loss", "lower": "a", "than": "b"},  # final: 1.0 < 0.5 is false
        {"run": "b", "metric": "acc", "at_least": 0.8},
        {"run": "a", "metric": "acc", "at_least": 0.75},
        {"run": "a", "metric": "acc", "exceeds": "kmeans"},  # final 0.7 > 0.6
        {"run": "b", "metric": "acc", "exceeds": "kmeans"},  # b has no k-means: unchecked
        {"run": "gone", "metric": "acc", "at_most": 1.0},
    ]
    claims = [Claim.parse(entry, "test") for entry in claims]
    outcome = [o.ok for o in check_claims(claims, runs)]
    assert outcome == [True, False, True, False, True, None, None]
    detail = claims[4].check(runs).detail
    assert "0.7000" in detail and "0.6000" in detail


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ('metric = "acc"\nrun = "x"\nexceeds = "kmeans"', None),
        ('metric = "acc"\nrun = "y"\nexceeds = "kmeans"', "names run 'y'"),
        ('metric = "acc"\nlower = "x"\nthan = "z"', "names run 'z'"),
        ('metric = "acc"\nrun = "x"', "expected 'lower'/'than', 'exceeds'"),
        ('run = "x"\nat_least = 1', "expected a 'metric' name"),
    ],
)
def test_experiment_claims_are_checked_when_loaded(tmp_path, monkeypatch, claim, message):
    from genae import experiments
    from genae.errors import ConfigError

    (tmp_path / "e.toml").write_text(
        f'name = "e"\n[[runs]]\nname = "x"\nmodel = "vae"\n[[expect]]\n{claim}\n'
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", tmp_path)
    if message is None:
        assert experiments.load_experiment("e").expect[0].exceeds == "kmeans"
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            experiments.load_experiment("e")


def test_shipped_experiments_parse():
    from genae import experiments

    names = experiments.available()
    for name in ("vae-vs-cvae", "m2-vs-m1m2", "vae-vs-dfc", "caae-attributes", "aae-priors"):
        assert name in names
        assert experiments.load_experiment(name).runs


def test_every_shipped_experiment_has_valid_run_configs():
    """A misspelt or out-of-range setting in a shipped TOML would only surface an hour into
    `genae experiment`; every run's training and model config must validate now."""
    from genae import experiments
    from genae.config import TrainConfig, from_mapping
    from genae.models.registry import model_class

    for name in experiments.available():
        experiment = experiments.load_experiment(name)
        assert experiment.version >= 1, f"{name} is still a slot"
        for run in experiment.runs:
            train = experiments.train_config_of(experiment, run, experiment.dataset)
            from_mapping(TrainConfig, train, where=f"{name}/{run.name} train").validate()
            config_class = model_class(run.model).config_class
            config = from_mapping(config_class, run.model_config, where=f"{name}/{run.name}")
            config.validate()


def test_report_command(experiment, tmp_path):
    out = experiment[0]
    page = tmp_path / "r.html"
    result = cli("report", out / "vae", out / "cvae", "--out", page, "--title", "two runs")
    assert result.code == 0, result.err
    text = page.read_text()
    assert "<title>two runs</title>" in text and 'src="file:' not in text
    assert text.count('src="data:image/png;base64,') >= 6  # 4 grids, a curve, 2 latent plots
    assert_user_error(cli("report", out / "vae", "--out", tmp_path / "r.txt"), "r.txt")
    assert_user_error(cli("report", tmp_path / "none", "--out", page), "none")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(experiment, tmp_path):
    page = experiment[0] / "report.html"
    url = page.resolve().as_uri()
    common = [CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = re.search(r'id="image-check"[^>]*', dom.stdout)
    assert check, "the page's image check did not run"
    images = int(re.search(r'data-images="(\d+)"', check.group(0)).group(1))
    broken = int(re.search(r'data-broken="(-?\d+)"', check.group(0)).group(1))
    # 4 sample grids, a curve, 2 latent plots, the CVAE's class grid
    assert broken == 0 and images >= 8
    for heading in ("Claims", "Samples by epoch", "Final metrics", "Pictures", "Configurations"):
        assert f"<h2>{heading}</h2>" in dom.stdout
    assert dom.stdout.count("<table") >= 4

    shot = tmp_path / "shot.png"
    render = subprocess.run(
        [*common, "--window-size=1366,900", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert render.returncode == 0 and shot.exists(), render.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1366)
    assert pixels.std() > 10  # text and pictures, not a blank page
