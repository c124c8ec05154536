"""Named, versioned comparisons: `genae experiment NAME --dataset D --out DIR`.

Each experiment is a TOML file shipped beside this module (`NAME.toml`):

    name, version, title, dataset   (the default dataset)
    description        what is compared, in words; the training settings are not repeated here:
                       the report writes them from the runs' own config.json
    seeds              the seeds every run is trained with (default [0])
    [train]            training settings shared by every run (not `seed`: see `seeds`)
    [[runs]]           name, model, model_config = {...}, train = {...} (per-run overrides),
                       metrics = [...] (registered metrics computed once the run is trained)
    [[expect]]         the claims the report checks (`genae.claims`): {metric, lower, than[,
                       epoch]} compares two runs; {run, metric, at_least | at_most} bounds one
                       final value; {run, metric, exceeds} says a final value beats another
                       metric of the same run (a baseline, such as k-means on pixels). Each is
                       judged on the final test values (an `epoch` one on validation), over the
                       seeds' mean (judged_on = "mean", the default) or on every seed
                       (judged_on = "every_seed").

Runs go to DIR/<run name>/seed-<S>: a finished one is reused, an interrupted one resumed, seed by
seed, so re-running an experiment only does what is missing. The report is DIR/report.html;
DIR/experiment.json holds the experiment's definition, its dataset and seeds, and the outcome of
each claim (per seed, for an every_seed claim). An experiment whose models are not registered (a
slot for a planned model) says which model it needs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genae.api import evaluate_run, fit
from genae.claims import Claim
from genae.config import read_toml, suggest
from genae.data.sources import load_dataset
from genae.data.types import DatasetSplits
from genae.errors import CheckpointError, ConfigError
from genae.io import write_json_atomic
from genae.models.registry import MODELS
from genae.report import build_report, seed_dir
from genae.training import rundir
from genae.training.runs import TEST_PREFIX

EXPERIMENTS_DIR = Path(__file__).parent


@dataclass
class RunSpec:
    name: str
    model: str
    model_config: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    name: str
    version: int
    title: str
    description: str
    dataset: str
    train: dict[str, Any]
    runs: list[RunSpec]
    expect: list[Claim]
    path: Path
    seeds: list[int] = field(default_factory=lambda: [0])


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def load_experiment(name: str) -> Experiment:
    path = EXPERIMENTS_DIR / f"{name}.toml"
    if not path.is_file():
        names = available()
        raise ConfigError(
            f"experiment: unknown experiment '{name}'{suggest(name, names)}; "
            f"available: {', '.join(names)}"
        )
    doc = read_toml(path)
    seeds = parse_seeds(doc.get("seeds", [0]), f"{path}: 'seeds'")
    for where, table in [("[train]", doc.get("train", {}))] + [
        (f"[[runs]] {r.get('name')!r} train", r.get("train", {})) for r in doc.get("runs", [])
    ]:
        if isinstance(table, dict) and "seed" in table:
            raise ConfigError(f"{path}: {where}: 'seed': set the top-level 'seeds = [...]' instead")
    try:
        runs = [
            RunSpec(
                name=r["name"],
                model=r["model"],
                model_config=dict(r.get("model_config", {})),
                train=dict(r.get("train", {})),
                metrics=list(r.get("metrics", [])),
            )
            for r in doc["runs"]
        ]
        run_names = {r.name for r in runs}
        expect = [
            Claim.parse(entry, f"{path}: [[expect]] number {i}", run_names)
            for i, entry in enumerate(doc.get("expect", []), 1)
        ]
        return Experiment(
            name=doc["name"],
            version=int(doc.get("version", 0)),
            title=doc.get("title", doc["name"]),
            description=doc.get("description", ""),
            dataset=doc.get("dataset", "fashion-mnist"),
            train=dict(doc.get("train", {})),
            runs=runs,
            expect=expect,
            path=path,
            seeds=seeds,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed experiment ({exc!r})") from None


def parse_seeds(value: Any, where: str) -> list[int]:
    """An experiment's `seeds`: a non-empty list of distinct integers >= 0."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError(
            f"{where}: expected a non-empty list of distinct integers >= 0, got {value!r}"
        )
    return list(value)


def check_models(experiment: Experiment) -> None:
    """Refuse, before training anything, an experiment whose models are not registered."""
    for run in experiment.runs:
        if run.model not in MODELS:
            raise ConfigError(
                f"experiment '{experiment.name}' needs model '{run.model}', which this genae "
                f"does not have yet (a slot for a planned model; see {experiment.path.name})"
            )


def _finished_epochs(run_dir: Path) -> int:
    """The last epoch of run_dir once it has been tested (its last metrics row holds the final
    `test_*` values); 0 before that, so that a run stopped between its last epoch and its test
    evaluation is resumed, which only evaluates it."""
    try:
        rows = rundir.read_metrics(run_dir)
    except (OSError, CheckpointError):
        return 0
    if not rows or not any(key.startswith(TEST_PREFIX) for key in rows[-1]):
        return 0
    return max((r["epoch"] for r in rows if isinstance(r.get("epoch"), int)), default=0)


def train_config_of(
    experiment: Experiment, run: RunSpec, dataset: str, seed: int = 0, **overrides
) -> dict:
    """The training config of `run` with `seed`."""
    train = {**experiment.train, **run.train, "dataset": dataset, "seed": seed}
    train.update({k: v for k, v in overrides.items() if v is not None})
    epochs = int(train.get("epochs", 10))
    # An --epochs override keeps only the snapshot epochs that still exist, plus the last.
    snapshots = [e for e in train.get("snapshot_epochs", []) if e <= epochs]
    train["snapshot_epochs"] = sorted({*snapshots, epochs})
    return train


def pending_runs(
    name: str, out: Path, *, epochs: int | None = None, force: bool = False
) -> list[tuple[str, int]]:
    """The (run name, seed) pairs of experiment `name` that training under `out` would still
    train or resume (all of them with `force`), seed by seed."""
    experiment = load_experiment(name)
    pending = []
    for seed in experiment.seeds:
        for run in experiment.runs:
            wanted = int(train_config_of(experiment, run, "", seed, epochs=epochs)["epochs"])
            if force or _finished_epochs(seed_dir(Path(out) / run.name, seed)) < wanted:
                pending.append((run.name, seed))
    return pending


def _evaluation_is_current(run_dir: Path, metrics: list[str]) -> bool:
    """Whether run_dir's evaluation file holds `metrics` and was written after its weights."""
    evaluation, weights = run_dir / rundir.EVALUATION_FILE, run_dir / rundir.WEIGHTS_FILE
    try:
        held = json.loads(evaluation.read_text())
        return all(m in held for m in metrics) and (
            evaluation.stat().st_mtime >= weights.stat().st_mtime
        )
    except (OSError, ValueError):
        return False


def _train_seed_run(
    experiment: Experiment,
    run: RunSpec,
    seed: int,
    out: Path,
    data: DatasetSplits,
    *,
    data_dir: Path | None = None,
    device: str = "cpu",
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    metric_options: Any = None,
) -> Path:
    """Train, resume or reuse one run of `experiment` with `seed` under `out`, then compute its
    extra metrics (kept from an earlier evaluation when the run was reused). Its directory."""
    run_dir = seed_dir(Path(out) / run.name, seed)
    train = train_config_of(
        experiment,
        run,
        data.name,
        seed,
        epochs=epochs,
        device=device,
        progress=progress,
        data_dir=str(data_dir) if data_dir else None,
    )
    done = _finished_epochs(run_dir)
    reused = not force and done >= train["epochs"]
    if reused:
        print(f"genae: {run_dir} already trained ({done} epochs); reusing it", file=sys.stderr)
    elif not force and (run_dir / rundir.CHECKPOINT_FILE).exists():
        print(f"genae: resuming {run_dir}", file=sys.stderr)
        fit(
            run.model,
            train_config={"epochs": train["epochs"]},
            data=data,
            run_dir=run_dir,
            resume=True,
        )
    else:
        fit(
            run.model,
            model_config=run.model_config,
            train_config=train,
            data=data,
            run_dir=run_dir,
            force=True,
        )
    if run.metrics and not (reused and _evaluation_is_current(run_dir, run.metrics)):
        result = evaluate_run(
            run_dir, data=data, device=device, metrics=run.metrics, options=metric_options
        )
        write_json_atomic(run_dir / rundir.EVALUATION_FILE, result)
    return run_dir


def run_spec(experiment: Experiment, run_name: str, seed: int) -> RunSpec:
    """The run called `run_name`, checked together with `seed` against the experiment."""
    runs = {r.name: r for r in experiment.runs}
    if run_name not in runs:
        raise ConfigError(
            f"experiment '{experiment.name}': no run '{run_name}'{suggest(run_name, list(runs))}; "
            f"its runs: {', '.join(runs)}"
        )
    if seed not in experiment.seeds:
        raise ConfigError(
            f"experiment '{experiment.name}': seed {seed} is not one of its seeds "
            f"{experiment.seeds}"
        )
    return runs[run_name]


def train_one(
    name: str,
    out: Path,
    run_name: str,
    seed: int,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Train (or reuse) the single run `run_name` with `seed` of experiment `name` under `out`,
    exactly as `run_experiment` would; no report. Its directory."""
    experiment = load_experiment(name)
    check_models(experiment)
    run = run_spec(experiment, run_name, seed)
    data = load_dataset(dataset or experiment.dataset, data_dir)
    return _train_seed_run(
        experiment,
        run,
        seed,
        out,
        data,
        data_dir=data_dir,
        device=device,
        epochs=epochs,
        force=force,
        progress=progress,
    )


def run_experiment(
    name: str,
    out: Path,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    metric_options: Any = None,
) -> Path:
    """Train (or reuse) every run of experiment `name` under `out`, compute the runs' extra
    metrics, and write `out/report.html`. Returns the report's path."""
    experiment = load_experiment(name)
    check_models(experiment)
    dataset = dataset or experiment.dataset
    data = load_dataset(dataset, data_dir)
    out = Path(out)
    # Seed by seed, so that an interrupted experiment already has every run of its first seeds.
    for seed in experiment.seeds:
        for run in experiment.runs:
            _train_seed_run(
                experiment,
                run,
                seed,
                out,
                data,
                data_dir=data_dir,
                device=device,
                epochs=epochs,
                force=force,
                progress=progress,
                metric_options=metric_options,
            )
    report = out / "report.html"
    outcome = build_report(
        [out / run.name for run in experiment.runs],
        report,
        title=f"{experiment.title} — {data.name}",
        description=experiment.description,
        claims=experiment.expect,
        names=[r.name for r in experiment.runs],
        seeds=experiment.seeds,
        experiment=f"{experiment.name} v{experiment.version}",
    )
    write_json_atomic(
        out / "experiment.json",
        {
            "experiment": experiment.name,
            "version": experiment.version,
            "dataset": data.name,
            "seeds": experiment.seeds,
            "runs": {
                r.name: {str(s): str(seed_dir(out / r.name, s)) for s in experiment.seeds}
                for r in experiment.runs
            },
            "expectations": [o.to_json() for o in outcome],
            "definition": json.loads(json.dumps(read_toml(experiment.path))),
        },
    )
    return report
