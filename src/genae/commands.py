"""The commands of `genae`: the argument parser (one `genae train MODEL` parser per registered
model, help from the config fields' docstrings) and one function per command. Every user error
ends in one line on stderr and exit code 2. `genae.cli.main` sets the process up first."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import signal
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from genae.api import evaluate_run, resolve_data
from genae.config import TrainConfig, field_docs, from_mapping, option_types, read_toml, suggest
from genae.data.memory import seeded_generator
from genae.data.sources import list_datasets
from genae.demo import run_demo
from genae.errors import ConfigError, GenaeError, TrainingError
from genae.experiments import pending_runs, run_experiment, train_one
from genae.io import write_json_atomic
from genae.metrics import MetricOptions, parse_names
from genae.models.base import check_temperature, require_temperature
from genae.models.registry import MODELS, model_class
from genae.report import build_report
from genae.runtime import usable_cores
from genae.training.distributed import leave_process_group
from genae.training.rundir import (
    CLI_OPTIONS,
    COLLAPSED,
    EVALUATION_FILE,
    load,
    read_run_config,
    train_config_of,
)
from genae.training.runs import train_run
from genae.training.trainer import TrainingInterrupted
from genae.version import __version__
from genae.viz.grids import save_sample_grid

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
THREADS_HELP = "CPU threads for this process (default: genae picks; also GENAE_THREADS)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) so they read like every other error.

    check_choice: called with the first positional argument before parsing (the model name of
    `genae train`); the ConfigError it raises for an unknown name becomes the error line.
    option_owners: flag -> the models that have it, to explain a flag given to the wrong model.
    """

    def __init__(
        self,
        *args: Any,
        check_choice: Callable[[str], object] | None = None,
        option_owners: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.check_choice = check_choice
        self.option_owners = option_owners or {}

    def error(self, message: str) -> NoReturn:
        print(f"genae: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.check_choice is not None and args and not args[0].startswith("-"):
            try:
                self.check_choice(args[0])
            except ConfigError as exc:
                self.error(str(exc))
        return super().parse_known_args(args, namespace)

    def parse_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        model = vars(parsed).get("model")
        for extra in extras:
            owners = self.option_owners.get(extra.split("=", 1)[0], ())
            if model is not None and owners:
                self.error(
                    f"option {extra.split('=', 1)[0]} does not apply to model '{model}' (it is "
                    f"an option of {', '.join(owners)}); see genae train {model} --help"
                )
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


TEMPERATURE_HELP = (
    "spread of a Gaussian prior's samples, z = mean + T std eps (1: the prior itself, "
    "0: its mean; default 1)"
)


def _temperature(text: str) -> float:
    """--temperature's value: a finite number >= 0 (argparse reports the error with the flag)."""
    try:
        value = float(text)
        require_temperature(value, "--temperature")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"expected a number >= 0 (1: the prior itself, 0: its mean), got {text!r}"
        ) from None
    return value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _metavar(annotation: Any) -> str:
    """What a flag's value looks like, from the field's type."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1:
        annotation = options[0]  # X | None: none is also accepted
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    if annotation is str:
        return "TEXT"
    if typing.get_origin(annotation) is tuple:
        return "N,N,..." if typing.get_args(annotation)[0] is int else "A,B,..."
    return "VALUE"


def _shown(value: Any) -> str:
    """A default value as it would be typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == "":
        return '""'
    return "none" if value is None else str(value)


def _add_config_flags(
    group: argparse._ArgumentGroup,
    cls: type,
    dest_prefix: str,
    own_defaults: Mapping[str, Any] | None = None,
) -> None:
    """One flag per field of config dataclass `cls` (but a derived one, which the run sets), its
    help from the field's docstring and its default (`own_defaults` over the dataclass's: a
    model's training defaults). Values stay strings (None when not given) and are checked by
    the config layer."""
    docs = field_docs(cls)
    defaults = {**vars(cls()), **(own_defaults or {})}
    for name, annotation in option_types(cls).items():
        doc = docs.get(name, "").removesuffix(".").replace("%", "%%")  # argparse formats with %
        help_line = f"{doc} (default: {_shown(defaults[name])})"
        if annotation is bool:
            group.add_argument(
                _flag(name),
                dest=dest_prefix + name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_line,
            )
        else:
            group.add_argument(
                _flag(name),
                dest=dest_prefix + name,
                default=None,
                metavar=_metavar(annotation),
                help=help_line,
            )


def model_summary(name: str, cls: type) -> str:
    """The first sentence of model class `cls`'s docstring, without a leading 'name:'."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0]  # not after "et al. 2014"
    return sentence.removeprefix(f"{name}: ")


def _option_owners(models: Mapping[str, type]) -> dict[str, list[str]]:
    """Each model flag (with --no-X for booleans) -> the models that have it."""
    owners: dict[str, list[str]] = {}
    for name, cls in models.items():
        for field, annotation in option_types(cls.config_class).items():
            flags = [_flag(field)] + ([_flag(f"no_{field}")] if annotation is bool else [])
            for flag in flags:
                owners.setdefault(flag, []).append(name)
    return owners


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="genae",
        description="Generative autoencoders: train, evaluate, sample.",
        option_owners=_option_owners(MODELS),
    )
    parser.add_argument("--version", action="version", version=f"genae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    train = commands.add_parser(
        "train",
        help="train a model",
        description="Train a model. `genae train MODEL --help` lists that model's options.",
        check_choice=model_class,
    )
    train.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    models = train.add_subparsers(
        dest="model", required=True, metavar="MODEL", title="models", parser_class=ArgumentParser
    )
    for name, cls in MODELS.items():
        summary = model_summary(name, cls)
        model = models.add_parser(name, help=summary, description=summary)
        model.add_argument(
            "--out", type=Path, metavar="DIR", help="run directory (default runs/MODEL-DATASET)"
        )
        model.add_argument(
            "--config", type=Path, metavar="TOML", help="file with [train] and [model] tables"
        )
        model.add_argument("--resume", action="store_true", help="continue the run in --out")
        model.add_argument(
            "--force", action="store_true", help="overwrite an existing run in --out"
        )
        model.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
        _add_config_flags(
            model.add_argument_group("training options"),
            TrainConfig,
            "train.",
            cls.training_defaults,
        )
        _add_config_flags(model.add_argument_group(f"{name} options"), cls.config_class, "model.")

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument(
        "--label", default=None, metavar="CLASS", help="class to generate: its name or index"
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--temperature", type=_temperature, default=1.0, metavar="T", help=TEMPERATURE_HELP
    )
    sample.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sample.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)

    evaluate = commands.add_parser("evaluate", help="test-set (or validation) metrics of a run")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--data-dir", type=Path, default=None)
    evaluate.add_argument(
        "--metrics",
        default=None,
        help="comma-separated extra metrics, e.g. neg_elbo,iw_nll,fid,conditional_accuracy",
    )
    evaluate.add_argument("--iw-samples", type=int, default=1000, help="k for iw_nll")
    evaluate.add_argument(
        "--samples", type=int, default=10_000, help="generated images for fid and the like"
    )
    evaluate.add_argument(
        "--temperature",
        type=_temperature,
        default=1.0,
        metavar="T",
        help=TEMPERATURE_HELP + "; for fid and conditional_accuracy",
    )
    evaluate.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="test: the final number (default); val: the run's validation split, to choose "
        "between runs without reading the test split",
    )
    evaluate.add_argument(
        "--save", action="store_true", help="also write RUN_DIR/evaluation.json (for reports)"
    )
    evaluate.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)

    experiment = commands.add_parser(
        "experiment", help="run a named comparison (genae/experiments/NAME.toml) and report it"
    )
    experiment.add_argument("name")
    experiment.add_argument("--dataset", default=None, help="instead of the experiment's own")
    experiment.add_argument("--out", type=Path, required=True, help="directory for runs + report")
    experiment.add_argument("--data-dir", type=Path, default=None)
    experiment.add_argument("--device", default="cpu")
    experiment.add_argument("--epochs", type=int, default=None, help="override (quick looks)")
    experiment.add_argument("--force", action="store_true", help="retrain finished runs")
    experiment.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    experiment.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    experiment.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train up to N runs at once, each in its own process with cores/N threads "
        "(the first seed runs alone, so shared networks are trained once)",
    )
    experiment.add_argument(
        "--only",
        metavar="RUN:SEED",
        help="train just this run with this seed (as the experiment would), no report",
    )

    report = commands.add_parser("report", help="one self-contained HTML page comparing runs")
    report.add_argument("run_dirs", type=Path, nargs="+")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.add_argument("--title", default=None)

    datasets = commands.add_parser("datasets", help="list datasets and where each was found")
    datasets.add_argument("--data-dir", type=Path, default=None)

    demo = commands.add_parser(
        "demo", help="train a VAE and a conditional VAE briefly and write grids and a metrics table"
    )
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    return parser


def _given(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {
        k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None
    }


def cmd_train(args: argparse.Namespace) -> int:
    train_values: dict[str, Any] = {}
    model_values: dict[str, Any] = {}
    if args.config is not None:
        document = read_toml(args.config)
        unknown = set(document) - {"train", "model"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"{args.config}: unknown table '{key}'"
                f"{suggest(key, ['train', 'model'])}; expected [train] and [model]"
            )
        for table in ("train", "model"):
            if not isinstance(document.get(table, {}), dict):
                raise ConfigError(f"{args.config}: '{table}' must be a table ([{table}])")
        train_values.update(document.get("train", {}))
        model_values.update(document.get("model", {}))
        named = model_values.pop("name", args.model)
        if named != args.model:
            raise ConfigError(
                f"{args.config}: model.name is '{named}' but the command trains '{args.model}'"
            )
    train_values.update(_given(args, "train."))
    model_values.update(_given(args, "model."))
    dataset = train_values.get("dataset", TrainConfig.dataset)
    out = args.out or Path("runs") / f"{args.model}-{dataset}"
    # train_run is genae.fit with the messages naming the CLI's flags
    run = train_run(
        args.model,
        model_config=model_values,
        train_config=train_values,
        run_dir=out,
        resume=args.resume,
        force=args.force,
        options=CLI_OPTIONS,
    )
    last = run.history[-1] if run.history else {}
    shown = [f"test_{k}" for k in ("neg_elbo", "recon_mse", "accuracy") if f"test_{k}" in last]
    print(
        f"finished {args.model} in {out}: "
        + ", ".join(f"test {k.removeprefix('test_')} {last[k]:.4f}" for k in shown)
    )
    return 0


def class_index(given: str, names: Sequence[str], num_classes: int) -> int:
    """The class `given` names: an index 0..num_classes-1, or a class name (any case)."""
    if re.fullmatch(r"-?\d+", given.strip()):
        index = int(given)
        if not 0 <= index < num_classes:
            raise ConfigError(f"--label: expected a class in 0..{num_classes - 1}, got {index}")
        return index
    by_lower = {name.lower(): k for k, name in enumerate(names)}
    if given.lower() in by_lower:
        return by_lower[given.lower()]
    # Matched in lower case, suggested as the class is spelled.
    close = difflib.get_close_matches(given.lower(), list(by_lower), n=1, cutoff=0.6)
    hint = f" (did you mean '{names[by_lower[close[0]]]}'?)" if close else ""
    listed = f"one of {', '.join(names)}" if names else "a class index"
    raise ConfigError(
        f"--label: '{given}' is not a class of this run{hint}; expected {listed} "
        f"or an index 0..{num_classes - 1}"
    )


def cmd_sample(args: argparse.Namespace) -> int:

    if args.n < 1:
        raise ConfigError(f"--n: expected a positive number of samples, got {args.n}")
    model = load(args.run_dir)
    label = None
    if args.label is not None:
        if not model.is_conditional or not model.spec.num_classes:
            raise ConfigError(
                f"--label: model '{model.name}' in {args.run_dir} is not class-conditional"
            )
        label = class_index(args.label, model.spec.class_names, model.spec.num_classes)
    check_temperature(model, args.temperature, "--temperature")
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name, got {str(args.out)!r}")
    with torch.no_grad():
        save_sample_grid(
            model,
            args.out,
            n=args.n,
            label=label,
            generator=seeded_generator(args.seed),
            temperature=args.temperature,
        )
    print(f"wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    data = None
    if args.data_dir is not None:
        saved = train_config_of(read_run_config(args.run_dir))
        data = resolve_data(dataclasses.replace(saved, data_dir=str(args.data_dir)))
    options = from_mapping(
        MetricOptions,
        {"iw_samples": args.iw_samples, "samples": args.samples, "temperature": args.temperature},
        where="evaluate",
    )
    if args.save and args.split != "test":
        raise ConfigError("--save: evaluation.json holds the test split's numbers; drop --split")
    result = evaluate_run(
        args.run_dir,
        data=data,
        device=args.device,
        metrics=parse_names(args.metrics),
        options=options,
        split="validation" if args.split == "val" else "test",
    )
    if args.save:
        write_json_atomic(args.run_dir / EVALUATION_FILE, result)
    if COLLAPSED in result:
        print(f"warning: {args.run_dir}: {result[COLLAPSED]}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    computed_on = result.pop("computed_on", {})
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    for key, about in computed_on.items():
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in about.items()))
    return 0


def parse_only(text: str) -> tuple[str, int]:
    """`--only RUN:SEED`."""
    run_name, _, seed = text.rpartition(":")
    if not run_name or not seed.isdigit():
        raise ConfigError(f"--only: expected RUN:SEED, such as cvae:0, got {text!r}")
    return run_name, int(seed)


def experiment_child(args: argparse.Namespace, run_name: str, seed: int, threads: int) -> list:
    """The command line of a child process that trains one run of `args`' experiment."""
    command = [sys.executable, "-m", "genae", "experiment", args.name, "--out", str(args.out)]
    command += ["--only", f"{run_name}:{seed}", "--threads", str(threads), "--no-progress"]
    for option, value in [
        ("--dataset", args.dataset),
        ("--data-dir", args.data_dir),
        ("--device", args.device),
        ("--epochs", args.epochs),
    ]:
        if value is not None:
            command += [option, str(value)]
    return command + (["--force"] if args.force else [])


def train_in_background(args: argparse.Namespace, pairs: list[tuple[str, int]]) -> None:
    """Train `pairs` of the experiment in up to args.jobs child processes at once, each writing
    to its own log (OUT/logs/RUN-seed-S.log). After a failure no new child starts, those running
    finish, and the failure is raised with the last line of its log. Interrupted (SIGINT or
    SIGTERM), every child saves a checkpoint and stops, so a rerun resumes them."""
    threads = args.threads or max(1, usable_cores() // args.jobs)
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running = list(pairs), {}
    failure = None

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        while (waiting and failure is None) or running:
            while waiting and failure is None and len(running) < args.jobs:
                run_name, seed = waiting.pop(0)
                log = logs / f"{run_name}-seed-{seed}.log"
                with open(log, "w") as handle:  # the child holds its own copy of the handle
                    child = subprocess.Popen(
                        experiment_child(args, run_name, seed, threads),
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                    )
                running[child] = (run_name, seed, log, time.monotonic())
                print(f"genae: training {run_name} seed {seed} (log: {log})", file=sys.stderr)
            time.sleep(0.2)
            for child in [c for c in running if c.poll() is not None]:
                run_name, seed, log, started = running.pop(child)
                minutes = (time.monotonic() - started) / 60
                if child.returncode == 0:
                    print(
                        f"genae: {run_name} seed {seed} done ({minutes:.1f} min)", file=sys.stderr
                    )
                elif failure is None:
                    lines = log.read_text(errors="replace").strip().splitlines()
                    failure = TrainingError(
                        f"experiment {args.name}: {run_name} seed {seed} failed (exit "
                        f"{child.returncode}): {lines[-1] if lines else 'no output'} (log: {log})"
                    )
    finally:
        for child in running:  # interrupted: each saves a checkpoint and exits (SIGINT)
            child.send_signal(signal.SIGINT)
        for child in running:
            child.wait()
        signal.signal(signal.SIGTERM, previous)
    if failure is not None:
        raise failure


def cmd_experiment(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    common = dict(dataset=args.dataset, data_dir=args.data_dir, device=args.device)
    if args.only is not None:
        run_name, seed = parse_only(args.only)
        run_dir = train_one(
            args.name,
            args.out,
            run_name,
            seed,
            **common,
            epochs=args.epochs,
            force=args.force,
            progress=args.progress,
        )
        print(f"wrote {run_dir}")
        return 0
    force = args.force
    if args.jobs > 1:
        pending = pending_runs(args.name, args.out, epochs=args.epochs, force=force)
        first_seed = pending[0][1] if pending else None
        # The first pending seed's runs one at a time, in this process: whatever they share (the
        # judge, DFC's feature network) is trained once, before the children need it.
        for run_name, seed in [p for p in pending if p[1] == first_seed]:
            train_one(
                args.name,
                args.out,
                run_name,
                seed,
                **common,
                epochs=args.epochs,
                force=force,
                progress=args.progress,
            )
        train_in_background(args, [p for p in pending if p[1] != first_seed])
        force = False  # everything is trained now; the pass below reuses it and reports
    report = run_experiment(
        args.name,
        args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        device=args.device,
        epochs=args.epochs,
        force=force,
        progress=args.progress,
    )
    print(f"wrote {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out: expected an .html file name, got {str(args.out)!r}")
    build_report(list(args.run_dirs), args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    for status in list_datasets(args.data_dir):
        mark = "yes" if status.available else "no "
        print(f"{status.name:<14} {mark}  {status.location}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, epochs=args.epochs, data_dir=args.data_dir)
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "experiment": cmd_experiment,
    "report": cmd_report,
    "datasets": cmd_datasets,
    "demo": cmd_demo,
}


def run(arguments: Sequence[str]) -> int:
    """Parse `arguments` and run the command; the exit code (errors are one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        code = COMMANDS[args.command](args)
        leave_process_group(wait=True)
        return code
    except TrainingError as exc:
        print(f"genae: error: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(exc, TrainingInterrupted) else 1
    except GenaeError as exc:
        print(f"genae: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("genae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        leave_process_group(wait=False)  # no-op when already left or never joined
