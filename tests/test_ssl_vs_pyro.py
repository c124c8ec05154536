"""benchmarks/ssl_vs_pyro.py: genae's M2 against Pyro's SS-VAE. Pyro is an optional extra
(`.[bench]`), so these tests are skipped without it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pyro")


@pytest.fixture(scope="module")
def bench(repo_script):
    return repo_script("benchmarks/ssl_vs_pyro.py")


def test_pyro_sees_the_examples_genae_trains_on(bench):
    """The labelled subset, training subset and test set of the Pyro side are genae's own."""
    from genae.config import TrainConfig
    from genae.data.sources import load_dataset
    from genae.models.registry import model_class
    from genae.training.runs import test_on_device, training_data

    splits = load_dataset("digits")
    config = TrainConfig(dataset="digits", seed=3, labels=20, max_train_examples=400, binarize=True)
    genae_data = training_data(splits, config, model_class("m2"))
    train, labelled, val = bench.shared_data(
        splits, seed=3, labels=20, binarize=True, max_train_examples=400
    )
    test = bench.shared_test(splits, seed=3, binarize=True)
    assert labelled.tolist() == genae_data.labelled.tolist()
    assert (train.images == genae_data.train.images).all()
    assert (val.images == test_on_device(genae_data.val, config).images).all()
    genae_test = test_on_device(genae_data.test.unseal(), config)
    assert (test.images == genae_test.images).all() and (test.labels == genae_test.labels).all()


def test_schedule_visits_every_example_once_per_epoch(bench):
    schedule = bench.pyro_schedule(1000, 100, seed=0, epoch=1)
    unlabelled = [i for kind, batch in schedule if kind == "u" for i in batch.tolist()]
    labelled = [i for kind, batch in schedule if kind == "l" for i in batch.tolist()]
    assert sorted(unlabelled) == list(range(1000))
    assert sorted(labelled) == list(range(100))
    # 5 unlabelled batches of 200 and 1 labelled batch, which is not at either end
    kinds = [kind for kind, _ in schedule]
    assert len(kinds) == 6 and kinds.count("l") == 1 and kinds[0] == kinds[-1] == "u"


@pytest.mark.slow  # four subprocesses, each importing torch (~25 s on 2 cores)
def test_benchmark_runs_both_contenders_on_digits(bench, tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["--dataset", "digits", "--labels", "20", "--epochs", "1", "--seeds", "0,1"]
    argv += ["--max-train-examples", "300", "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    for name in ("genae", "pyro"):
        entry = report[name]
        assert entry["seeds"] == [0, 1]
        assert entry["failed_seeds"] == []
        for metric in ("accuracy", "supervised_baseline_accuracy", "samples_per_s"):
            values = entry["per_seed"][metric]
            assert len(values) == 2
            assert entry["mean"][metric] == pytest.approx(sum(values) / 2)
            assert entry["sd"][metric] >= 0
            if metric == "samples_per_s":
                assert all(v > 0 for v in values)
            else:
                assert all(0.0 <= v <= 1.0 for v in values)
    # genae's whole step (its baseline's phase included) is slower than M2's own phase, and its
    # ratio to Pyro is taken from the same summary as the headline one
    genae, pyro = report["genae"], report["pyro"]
    whole = genae["per_seed"]["with_baseline_samples_per_s"]
    assert all(0 < w <= own for w, own in zip(whole, genae["per_seed"]["samples_per_s"]))
    assert pyro["per_seed"]["with_baseline_samples_per_s"] == [None, None]
    pyro_speed = pyro["mean"]["samples_per_s"]
    assert report["speed_ratio_with_genae_baseline"] == pytest.approx(
        genae["mean"]["with_baseline_samples_per_s"] / pyro_speed
    )
    assert report["speed_ratio_with_genae_baseline"] <= report["speed_ratio_genae_over_pyro"]
    # genae's baseline is the same network on the same data: computed once, used for both
    baselines = [report[n]["per_seed"]["supervised_baseline_accuracy"] for n in ("genae", "pyro")]
    assert baselines[0] == baselines[1]
    assert all(r["baseline_source"] == "genae" for r in report["pyro"]["runs"])
    assert report["settings"]["binarize"] is True  # the genae recipe's
    printed = capsys.readouterr().out
    assert "genae" in printed and "pyro" in printed and "+-" in printed


def test_pyro_worker_trains_its_own_baseline_when_asked(bench, capsys):
    """When genae's baseline is not the same network (or genae failed), the Pyro worker trains
    the classifier on the labels alone itself."""
    argv = ["--worker", "pyro", "--train-baseline", "--dataset", "digits", "--labels", "20"]
    argv += ["--epochs", "1", "--max-train-examples", "200", "--binarize"]
    assert bench.main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(bench.RESULT_PREFIX)
    result = json.loads(line[len(bench.RESULT_PREFIX) :])
    assert result["baseline_source"] == "pyro-worker"
    assert 0.0 <= result["supervised_baseline_accuracy"] <= 1.0
    assert 0.0 <= result["accuracy"] <= 1.0 and result["steps"] == 2  # 1 unlabelled + 1 labelled


def test_workers_train_compiled_and_jit_traced_when_asked(
    bench, capsys, monkeypatch, compile_without_codegen
):
    """--genae-compile trains genae through torch.compile (here its tracing without inductor's
    C++ code generation) and --pyro-jit Pyro through its JIT-traced losses."""
    import pyro.infer

    traced = []

    class CountedJitTraceEnumELBO(pyro.infer.JitTraceEnum_ELBO):
        def __init__(self, *args, **kw):
            traced.append(self)
            super().__init__(*args, **kw)

    monkeypatch.setattr(pyro.infer, "JitTraceEnum_ELBO", CountedJitTraceEnumELBO)
    common = ["--dataset", "digits", "--labels", "20", "--epochs", "1"]
    common += ["--max-train-examples", "200", "--binarize"]
    results = {}
    for name, flag in (("genae", "--genae-compile"), ("pyro", "--pyro-jit")):
        assert bench.main(["--worker", name, flag, *common]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        results[name] = json.loads(line[len(bench.RESULT_PREFIX) :])
        assert 0.0 <= results[name]["accuracy"] <= 1.0
    assert len(compile_without_codegen) == 1  # the genae worker's step, and nothing of Pyro's
    assert len(traced) == 1  # Pyro's unlabelled loss
    assert results["genae"]["recipe"]["train_config"]["compile"] is True
