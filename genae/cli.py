"""The `genae` command line. Every user error ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genae.config import TrainConfig, field_types, from_mapping, read_toml, suggest
from genae.errors import ConfigError, GenaeError, TrainingError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) so they read like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"genae: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(
    parser: argparse.ArgumentParser,
    types: dict[str, Any],
    dest_prefix: str,
    skip: Sequence[str] = (),
) -> None:
    """One flag per config field; values stay strings and are checked by the config layer."""
    for name, annotation in types.items():
        if name in skip:
            continue
        dest = dest_prefix + name
        if annotation is bool:
            parser.add_argument(
                _flag(name), dest=dest, action=argparse.BooleanOptionalAction, default=None
            )
        else:
            parser.add_argument(_flag(name), dest=dest, default=None, metavar="VALUE")


def _model_field_types() -> dict[str, Any]:
    """The union of every registered model's config fields (each becomes a `train` flag)."""
    from genae.models.registry import MODELS

    union: dict[str, Any] = {}
    for cls in MODELS.values():
        union.update(field_types(cls.config_class))
    return union


def build_parser() -> ArgumentParser:
    from genae import __version__
    from genae.models.registry import MODELS

    parser = ArgumentParser(
        prog="genae", description="Generative autoencoders: train, evaluate, sample."
    )
    parser.add_argument("--version", action="version", version=f"genae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    train = commands.add_parser("train", help="train a model")
    train.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    train.add_argument("--out", type=Path, help="run directory (default runs/MODEL-DATASET)")
    train.add_argument("--config", type=Path, help="TOML file with [train] and [model] tables")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    _add_config_flags(train, field_types(TrainConfig), "train.")
    _add_config_flags(train, _model_field_types(), "model.")

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--label", type=int, default=None, help="class to generate")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, required=True, help="PNG file to write")

    evaluate = commands.add_parser("evaluate", help="test-set metrics of a run")
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
        "--save", action="store_true", help="also write RUN_DIR/evaluation.json (for reports)"
    )

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
    return parser


def _given(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {
        k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None
    }


def cmd_train(args: argparse.Namespace) -> int:
    from genae.api import fit
    from genae.models.registry import model_class

    cls = model_class(args.model)
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
    own_fields = field_types(cls.config_class)
    for key, value in _given(args, "model.").items():
        if key not in own_fields:
            raise ConfigError(f"option {_flag(key)} does not apply to model '{args.model}'")
        model_values[key] = value
    dataset = train_values.get("dataset", TrainConfig.dataset)
    out = args.out or Path("runs") / f"{args.model}-{dataset}"
    run = fit(
        args.model,
        model_config=model_values,
        train_config=train_values,
        run_dir=out,
        resume=args.resume,
        force=args.force,
    )
    last = run.history[-1] if run.history else {}
    shown = {k: v for k, v in last.items() if k in ("neg_elbo", "recon_mse", "accuracy")}
    print(f"finished {args.model} in {out}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from genae.data.memory import seeded_generator
    from genae.training.rundir import load
    from genae.viz.grids import save_sample_grid

    if args.n < 1:
        raise ConfigError(f"--n: expected a positive number of samples, got {args.n}")
    model = load(args.run_dir)
    if args.label is not None:
        if not model.is_conditional or not model.spec.num_classes:
            raise ConfigError(
                f"--label: model '{model.name}' in {args.run_dir} is not class-conditional"
            )
        if not 0 <= args.label < model.spec.num_classes:
            raise ConfigError(
                f"--label: expected a class in 0..{model.spec.num_classes - 1}, got {args.label}"
            )
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name, got '{args.out}'")
    with torch.no_grad():
        save_sample_grid(
            model, args.out, n=args.n, label=args.label, generator=seeded_generator(args.seed)
        )
    print(f"wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from genae.api import evaluate_run

    data = None
    if args.data_dir is not None:
        from dataclasses import replace

        from genae.api import resolve_data
        from genae.training.rundir import read_run_config, train_config_of

        saved = train_config_of(read_run_config(args.run_dir))
        data = resolve_data(replace(saved, data_dir=str(args.data_dir)))
    from genae.metrics import MetricOptions, parse_names

    options = from_mapping(
        MetricOptions, {"iw_samples": args.iw_samples, "samples": args.samples}, where="evaluate"
    )
    result = evaluate_run(
        args.run_dir,
        data=data,
        device=args.device,
        metrics=parse_names(args.metrics),
        options=options,
    )
    if args.save:
        from genae.io import write_json_atomic
        from genae.report import EVALUATION_FILE

        write_json_atomic(args.run_dir / EVALUATION_FILE, result)
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


def cmd_experiment(args: argparse.Namespace) -> int:
    from genae.experiments import run_experiment

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    report = run_experiment(
        args.name,
        args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        device=args.device,
        epochs=args.epochs,
        force=args.force,
        progress=args.progress,
    )
    print(f"wrote {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from genae.report import build_report

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out: expected an .html file name, got '{args.out}'")
    build_report(list(args.run_dirs), args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from genae.data.sources import list_datasets

    for status in list_datasets(args.data_dir):
        mark = "yes" if status.available else "no "
        print(f"{status.name:<14} {mark}  {status.location}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genae.demo import run_demo

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


def main(argv: Sequence[str] | None = None) -> int:
    import genae  # noqa: F401  (registers models before the parser lists them)
    from genae.training.distributed import leave_process_group

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
        leave_process_group(wait=True)
        return code
    except TrainingError as exc:
        from genae.training.trainer import TrainingInterrupted

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


if __name__ == "__main__":
    sys.exit(main())
