"""`genae report RUN_DIR... --out report.html`: one self-contained HTML page comparing runs.

Everything is inline (images as base64 data URIs, CSS, one small script), so the file works
offline and can be mailed around. Sections, each only where it applies:

* the settings the runs were trained with (from their config.json);
* the claims an experiment checks, with what each is judged on and its outcome;
* final test metrics, with what each was computed on, and published numbers beside ours;
* sample grids by epoch: one row per run, one column per snapshot epoch (like a paper's figure);
* validation negative ELBO (or accuracy) per epoch (table and curves);
* the pictures each run wrote after training (its test codes, class grids, relabel grids);
* each run's configuration.

A run trained with several seeds (an experiment's RUN/seed-S directories) is one row: each final
metric as mean ± sample sd over the seeds with the per-seed values beside it, curves as the mean
over the seeds, and the first seed's pictures.

Pictures are the PNGs the runs wrote (RUN_DIR/samples, RUN_DIR/pictures), embedded as they are:
the report reads run directories and never loads a model or a dataset.

The page counts its images that failed to decode into `#image-check` (data-broken) once loaded,
so a headless browser can verify it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genae.claims import Claim, Outcome, check_claims, decimals_for
from genae.errors import CheckpointError, GenaeError
from genae.io import write_text_atomic
from genae.metrics.anchors import anchor_for
from genae.training import rundir
from genae.version import __version__
from genae.viz.plots import curves_png

# Metrics shown in the final table, in this order, when a run has them; then any others.
PREFERRED = (
    "neg_elbo",
    "iw_nll",
    "recon_nll",
    "kl",
    "recon_mse",
    "accuracy",
    "conditional_accuracy",
    "conditional_accuracy_second_judge",
    "reconstruction_judged_accuracy",
    "clustering_accuracy",
    "fid",
    "fid_second_judge",
)
LOWER_IS_BETTER = {"neg_elbo", "iw_nll", "recon_nll", "recon_mse", "fid", "fid_second_judge", "nll"}


SEED_DIR_PREFIX = "seed-"


def seed_dir(group_dir: Path, seed: int) -> Path:
    """Where seed `seed` of an experiment's run lives: GROUP_DIR/seed-S."""
    return Path(group_dir) / f"{SEED_DIR_PREFIX}{seed}"


def _numbers(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        k[len(prefix) :]: v
        for k, v in row.items()
        if k.startswith(prefix) and isinstance(v, (int, float))
    }


@dataclass
class RunInfo:
    """A run directory (one seed) as the report reads it (a `genae.claims.RunRecord`)."""

    name: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    evaluation: dict[str, Any] = field(default_factory=dict)
    grids: dict[int, Path] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def dataset(self) -> str:
        return self.config["train"]["dataset"]

    @property
    def seed(self) -> int:
        return int(self.config["train"].get("seed", 0))

    def final(self) -> dict[str, Any]:
        """The final test values by metric name: the `test_*` values of the last metrics row,
        overridden by a later evaluation of the finished run (evaluation.json, on test)."""
        last = self.history[-1] if self.history else {}
        values = _numbers(last, "test_")
        values.update(
            {
                k: v
                for k, v in self.evaluation.items()
                if isinstance(v, (int, float)) and k != "examples"
            }
        )
        return values

    def collapsed(self) -> str | None:
        """Why the run is a failure rather than a result, when its final evaluation said so."""
        if rundir.COLLAPSED in self.evaluation:
            return self.evaluation[rundir.COLLAPSED]
        return (self.history[-1] if self.history else {}).get("test_" + rundir.COLLAPSED)

    def validation(self, epoch: int) -> dict[str, Any]:
        """The validation values at `epoch` by metric name (`val_*` in that epoch's row)."""
        for row in self.history:
            if row.get("epoch") == epoch:
                return _numbers(row, "val_")
        return {}

    def last_epoch(self) -> int | None:
        epochs = [row["epoch"] for row in self.history if isinstance(row.get("epoch"), int)]
        return max(epochs) if epochs else None


@dataclass
class RunGroup:
    """One named run of a report: the same settings trained with one seed or several."""

    name: str
    path: Path
    runs: list[RunInfo]

    @property
    def first(self) -> RunInfo:
        return self.runs[0]

    @property
    def model(self) -> str:
        return self.first.model

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


def read_run(path: Path, name: str | None = None) -> RunInfo:
    path = Path(path)
    config = rundir.read_run_config(path)
    history = rundir.read_metrics(path)
    evaluation = {}
    evaluation_file = path / rundir.EVALUATION_FILE
    if evaluation_file.exists():
        try:
            evaluation = json.loads(evaluation_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{evaluation_file}: not valid JSON ({exc})") from None
    grids = {}
    for png in sorted((path / rundir.SAMPLES_DIR).glob("epoch_*.png")):
        match = re.fullmatch(r"epoch_(\d+)\.png", png.name)
        if match:
            grids[int(match.group(1))] = png
    return RunInfo(name or path.name, path, config, history, evaluation, grids)


def read_group(path: Path, name: str | None = None, seeds: list[int] | None = None) -> RunGroup:
    """A run directory (one seed), or a directory of seed-S run directories (an experiment's
    run): those of `seeds` when given, else every one there, by seed."""
    path = Path(path)
    name = name or path.name
    if (path / rundir.CONFIG_FILE).exists() or not path.is_dir():
        return RunGroup(name, path, [read_run(path, name)])
    if seeds is None:
        found = [p.name[len(SEED_DIR_PREFIX) :] for p in path.glob(f"{SEED_DIR_PREFIX}*")]
        seeds = sorted(int(s) for s in found if s.isdigit())
        if not seeds:
            raise CheckpointError(
                f"{path}: neither a run directory (no {rundir.CONFIG_FILE}) nor a directory of "
                f"{SEED_DIR_PREFIX}S run directories"
            )
    runs = [read_run(seed_dir(path, s), name) for s in seeds]
    return RunGroup(name, path, sorted(runs, key=lambda run: run.seed))


# --- small HTML helpers ---------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return esc(value)


def about_text(about: dict[str, Any]) -> str:
    parts = []
    for key, value in about.items():
        if key.endswith("per_class"):  # per-class lists have their own table
            continue
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table; cells are already HTML. Columns from `numeric_from` are right-aligned."""
    cls = lambda i: ' class="num"' if i >= numeric_from else ""  # noqa: E731
    out = ["<table><thead><tr>"]
    out += [f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# --- sections -------------------------------------------------------------------------------


def claims_section(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return ""
    marks = {
        True: '<span class="ok">✔ holds</span>',
        False: '<span class="bad">✘ fails</span>',
        None: '<span class="na">? not checked</span>',
    }
    rows = []
    for o in outcomes:
        if len(o.seeds) <= 1:
            judged = f"seed {o.seeds[0]}" if o.seeds else "—"
        elif o.judged_on == "mean":
            judged = f"mean over {len(o.seeds)} seeds"
        else:
            judged = f"every seed ({len(o.seeds)})"
        outcome = marks[o.ok]
        if o.per_seed:
            outcome += (
                "<br><span class='dim'>"
                + ", ".join(f"seed {seed} {'✔' if ok else '✘'}" for seed, ok in o.per_seed)
                + "</span>"
            )
        rows.append([esc(o.text), esc(judged), outcome, esc(o.detail)])
    return "<h2>Claims</h2>" + table(
        ["claim", "judged on", "outcome", "numbers"], rows, numeric_from=99
    )


def seeds_text(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def samples_section(groups: list[RunGroup]) -> str:
    """The first seed's sample grids of each run."""
    epochs = sorted({e for g in groups for e in g.first.grids})
    if not epochs:
        return ""
    head = ["run"] + [f"epoch {e}" for e in epochs]
    rows = []
    for group in groups:
        run = group.first
        label = esc(group.model) + (f", seed {run.seed}" if len(group.runs) > 1 else "")
        cells = [f"<b>{esc(group.name)}</b><br><span class='dim'>{label}</span>"]
        for e in epochs:
            png = run.grids.get(e)
            if png is None:
                cells.append("<span class='dim'>—</span>")
            else:
                alt = f"{group.name} samples, epoch {e}"
                cells.append(
                    f'<img class="grid" alt="{esc(alt)}" src="{data_uri(png.read_bytes())}">'
                )
        rows.append(cells)
    note = (
        "<p class='dim'>Samples from the prior at each snapshot epoch (fixed noise). "
        "Class-conditional models: one row per class, the same z in each column.</p>"
    )
    return (
        "<h2>Samples by epoch</h2>"
        + note
        + table(head, rows, numeric_from=99).replace("<table>", '<table class="samples">')
    )


def seeds_cell(values: list[float | None]) -> str:
    """One seed: its value. Several: mean ± sd (sample sd) over the seeds that have the value,
    with each seed's value beside it, all to the same decimals."""
    present = [v for v in values if v is not None]
    if not present:
        return "<span class='dim'>—</span>"
    if len(values) == 1:
        return fmt(present[0])
    d = decimals_for(present)
    mean = statistics.fmean(present)
    sd = f"{statistics.stdev(present):.{d}f}" if len(present) > 1 else "—"
    each = ", ".join(f"{v:.{d}f}" if v is not None else "—" for v in values)
    return f"{mean:.{d}f} ± {sd} <span class='seeds'>({each})</span>"


def metrics_section(groups: list[RunGroup]) -> str:
    finals = {g.name: [run.final() for run in g.runs] for g in groups}
    present = {
        k
        for per_seed in finals.values()
        for final in per_seed
        for k, v in final.items()
        if isinstance(v, (int, float))
    }
    names = [m for m in PREFERRED if m in present]
    names += sorted(present - set(names))
    if not names:
        return ""
    head = ["run", "model", "epochs", "seeds"] + [
        f"{esc(m)} {'↓' if m in LOWER_IS_BETTER else '↑' if 'accuracy' in m else ''}" for m in names
    ]
    rows, anchors, notes = [], [], []
    for group in groups:
        per_seed = finals[group.name]
        epochs = sorted({e for run in group.runs if (e := run.last_epoch()) is not None})
        row = [
            f"<b>{esc(group.name)}</b>",
            esc(group.model),
            esc(", ".join(map(str, epochs)) or "—"),
            esc(", ".join(map(str, group.seeds))),
        ]
        for m in names:
            values = [final.get(m) for final in per_seed]
            row.append(seeds_cell(values))
            anchor = anchor_for(group.model, group.dataset, m)
            present_values = [v for v in values if v is not None]
            if anchor is not None:
                ours = statistics.fmean(present_values) if present_values else math.nan
                anchors.append(
                    [
                        esc(group.name),
                        esc(m),
                        fmt(ours),
                        fmt(anchor.value),
                        esc(anchor.source),
                        esc(anchor.setting),
                    ]
                )
        rows.append(row)
        notes += computed_on_notes(group)
    out = ["<h2>Final metrics</h2>", table(head, rows, numeric_from=2)]
    several = any(len(g.runs) > 1 for g in groups)
    out.append(
        "<p class='dim'>Test split, read once at the end of each run; ↓ lower is better, ↑ higher "
        "is better. neg_elbo, iw_nll and recon_nll in nats per image. Without other notes a "
        "number is the evaluation of the finished run on the whole test split."
        + (
            " With several seeds: mean ± sample standard deviation over the seeds, each seed's "
            "value in brackets (in the order of the seeds column)."
            if several
            else ""
        )
        + "</p>"
    )
    if notes:
        out.append("<ul class='notes'>" + "".join(notes) + "</ul>")
    if anchors:
        out.append("<h3>Published numbers</h3>")
        out.append(
            table(
                ["run", "metric", "ours", "published", "source", "their setting"],
                anchors,
                numeric_from=2,
            )
        )
    return "".join(out)


def computed_on_notes(group: RunGroup) -> list[str]:
    """What each evaluated metric was computed on (metrics computed on the same thing share one
    line), and per-class values, averaged over the seeds."""
    notes = []
    groups: dict[str, list[str]] = {}
    per_class: dict[str, list[list[float]]] = {}
    for run in group.runs:
        for metric, about in run.evaluation.get("computed_on", {}).items():
            metrics = groups.setdefault(about_text(about), [])
            if metric not in metrics:
                metrics.append(metric)
            if "per_class" in about:
                per_class.setdefault(metric, []).append(about["per_class"])
    class_names = group.first.config.get("data_spec", {}).get("class_names") or []
    for metric, lists in per_class.items():
        means = [statistics.fmean(column) for column in zip(*lists)]
        text = ", ".join(
            f"{class_names[k] if k < len(class_names) else k} {v:.2f}" for k, v in enumerate(means)
        )
        over = f" (mean over {len(lists)} seeds)" if len(lists) > 1 else ""
        notes.append(f"<li><b>{esc(group.name)}</b> {esc(metric)} per class{over}: {text}</li>")
    for about, metrics in groups.items():
        notes.append(f"<li><b>{esc(group.name)}</b> {esc(', '.join(metrics))}: {esc(about)}</li>")
    return notes


def curve_metric(groups: list[RunGroup]) -> str | None:
    for metric in ("neg_elbo", "accuracy", "loss"):
        if all(run.validation(1).get(metric) is not None for g in groups for run in g.runs):
            return metric
    return None


def curves_section(groups: list[RunGroup]) -> str:
    """Validation curves (the test split is read only at the end): each run's mean over its
    seeds at each epoch."""
    metric = curve_metric(groups)
    if metric is None:
        return ""
    series = {}
    for group in groups:
        by_epoch: dict[int, list[float]] = {}
        for run in group.runs:
            for row in run.history:
                epoch = row.get("epoch")
                value = run.validation(epoch).get(metric) if isinstance(epoch, int) else None
                if value is not None:
                    by_epoch.setdefault(epoch, []).append(value)
        epochs = sorted(by_epoch)
        series[group.name] = (epochs, [statistics.fmean(by_epoch[e]) for e in epochs])
    epochs = sorted({e for xs, _ in series.values() for e in xs})
    head = ["epoch"] + [esc(g.name) for g in groups]
    by_run = {name: dict(zip(xs, ys)) for name, (xs, ys) in series.items()}
    rows = []
    for e in epochs:
        values = [by_run[g.name].get(e) for g in groups]
        present = [v for v in values if v is not None]
        best = (min if metric in LOWER_IS_BETTER else max)(present) if present else None
        cells = [str(e)]
        for v in values:
            text = fmt(v) if v is not None else "—"
            cells.append(
                f"<b>{text}</b>" if v is not None and v == best and len(groups) > 1 else text
            )
        rows.append(cells)
    label = "validation neg_elbo (nats/image)" if metric == "neg_elbo" else f"validation {metric}"
    png = curves_png(series, label)
    several = any(len(g.runs) > 1 for g in groups)
    note = (
        "<p class='dim'>On the validation split, each epoch; with several seeds, the mean over "
        "the seeds.</p>"
        if several
        else "<p class='dim'>On the validation split, each epoch.</p>"
    )
    return (
        f"<h2>Validation {esc(metric)} per epoch</h2>{note}<div class='pair'>"
        f"<div>{table(head, rows)}</div>"
        f'<div><img class="plot" alt="{esc(label)} per epoch" src="{data_uri(png)}"></div></div>'
    )


PICTURE_CAPTIONS = {
    "latent.png": "test codes coloured by class (over the prior, where it is 2-D)",
    "class_grid.png": "samples, one row per class or category",
    "caae_grid.png": "first column: a test image; then the same code under each label",
}


def per_class_values(group: RunGroup, metric: str, key: str) -> list[list[float] | None]:
    """Each seed's per-class list `key` of `metric`'s computed_on entry (None where absent)."""
    values = []
    for run in group.runs:
        about = run.evaluation.get("computed_on", {}).get(metric, {})
        values.append(about.get(key) if isinstance(about.get(key), list) else None)
    return values


def conditional_section(groups: list[RunGroup]) -> str:
    """Per conditional model: its per-class sample grid (first seed) beside a table of how often
    the judge takes its samples of each class for that class, against the same judge on its
    reconstructions made with the true label (the ceiling its decoder allows)."""
    out = []
    for group in groups:
        samples = per_class_values(group, "conditional_accuracy", "per_class")
        if not any(samples):
            continue
        ceiling = per_class_values(group, "conditional_accuracy", "reconstruction_judged_per_class")
        num_classes = max(len(v) for v in samples if v)
        names = group.first.config.get("data_spec", {}).get("class_names") or []
        rows = []
        for k in range(num_classes):
            cells = [esc(names[k] if k < len(names) else k)]
            for per_seed in (samples, ceiling):
                cells.append(seeds_cell([v[k] if v and k < len(v) else None for v in per_seed]))
            rows.append(cells)
        overall = [run.evaluation.get("conditional_accuracy") for run in group.runs]
        overall_ceiling = [
            run.evaluation.get("reconstruction_judged_accuracy") for run in group.runs
        ]
        rows.append(["<b>all</b>", seeds_cell(overall), seeds_cell(overall_ceiling)])
        head = ["class", "samples judged this class", "reconstructions judged (ceiling)"]
        grid = group.first.path / rundir.PICTURES_DIR / "class_grid.png"
        seed = f", seed {group.first.seed}" if len(group.runs) > 1 else ""
        picture = (
            f'<figure><img class="plot" alt="{esc(group.name)} samples, one row per class" '
            f'src="{data_uri(grid.read_bytes())}"><figcaption>{esc(group.name)}{esc(seed)}: '
            "samples, one row per class</figcaption></figure>"
            if grid.exists()
            else ""
        )
        about = group.first.evaluation.get("computed_on", {}).get("conditional_accuracy", {})
        how = about_text(about)
        out.append(
            f"<h3>{esc(group.name)}</h3><p class='dim'>{esc(how)}</p>"
            f"<div class='pair'><div>{picture}</div><div>{table(head, rows)}</div></div>"
        )
    if not out:
        return ""
    return "<h2>Conditional generation, per class</h2>" + "".join(out)


def has_class_table(group: RunGroup) -> bool:
    return any(per_class_values(group, "conditional_accuracy", "per_class"))


def pictures_section(groups: list[RunGroup]) -> str:
    """The pictures each run's first seed wrote after training (`RUN_DIR/pictures`), e.g. an
    adversarial autoencoder's codes over its prior or a CAAE's label grid."""
    figures = []
    for group in groups:
        run = group.first
        seed = f" (seed {run.seed})" if len(group.runs) > 1 else ""
        for png in sorted((run.path / rundir.PICTURES_DIR).glob("*.png")):
            if png.name == "class_grid.png" and has_class_table(group):
                continue  # shown beside its per-class table
            caption = f"{group.name}{seed}: {PICTURE_CAPTIONS.get(png.name, png.stem)}"
            figures.append(
                f'<figure><img class="plot" alt="{esc(caption)}" '
                f'src="{data_uri(png.read_bytes())}"><figcaption>{esc(caption)}</figcaption>'
                "</figure>"
            )
    if not figures:
        return ""
    return "<h2>Pictures</h2><div class='figures'>" + "".join(figures) + "</div>"


def configs_section(groups: list[RunGroup]) -> str:
    out = ["<h2>Configurations</h2>"]
    for group in groups:
        for run in group.runs:
            shown = {
                k: run.config[k]
                for k in ("model", "model_config", "train", "genae_version")
                if k in run.config
            }
            seed = f" (seed {run.seed})" if len(group.runs) > 1 else ""
            out.append(
                f"<details><summary><b>{esc(group.name)}</b>{esc(seed)} — {esc(run.path)}"
                f"</summary><pre>{esc(json.dumps(shown, indent=2, sort_keys=True))}</pre>"
                "</details>"
            )
    return "".join(out)


def setting_phrases(train: dict[str, Any]) -> dict[str, str]:
    """The training settings of a run's config.json in words, by setting."""
    phrases = {
        "epochs": f"{train.get('epochs')} epoch{'' if train.get('epochs') == 1 else 's'}",
        "optimiser": f"Adam (lr {train.get('lr')}, batch {train.get('batch_size')})",
    }
    schedule = train.get("lr_schedule", "constant")
    if schedule != "constant":
        phrases["lr_schedule"] = f"{schedule} learning-rate schedule"
    if train.get("binarize"):
        phrases["binarize"] = "binarised pixels"
    if str(train.get("labels", "all")) != "all":
        phrases["labels"] = (
            f"{train['labels']} labels (labelled batch {train.get('labelled_batch_size')})"
        )
    if train.get("max_train_examples"):
        phrases["max_train_examples"] = f"{train['max_train_examples']} training examples"
    if "val_size" in train:
        size = train["val_size"]
        phrases["val_size"] = f"validation split {size}" if size else "no validation split"
    if train.get("image_size"):
        phrases["image_size"] = f"{train['image_size']}x{train['image_size']} images"
    return phrases


def settings_text(groups: list[RunGroup]) -> str:
    """The settings the runs were trained with, from their config.json (not from what an
    experiment file says): those every run shares, then each run's own."""
    phrases = {g.name: setting_phrases(g.first.config["train"]) for g in groups}
    keys = list(dict.fromkeys(k for p in phrases.values() for k in p))
    shared = [k for k in keys if len({p.get(k) for p in phrases.values()}) == 1]
    seeds = {tuple(g.seeds) for g in groups}
    parts = [phrases[groups[0].name][k] for k in shared]
    if len(seeds) == 1:
        parts.append(seeds_text(list(next(iter(seeds)))))
    text = "Trained with " + ", ".join(parts) + "."
    own = []
    for group in groups:
        mine = [p for k, p in phrases[group.name].items() if k not in shared]
        if len(seeds) > 1:
            mine.append(seeds_text(group.seeds))
        if mine:
            own.append(f"{group.name}: {', '.join(mine)}")
    if own:
        text += " " + "; ".join(own) + "."
    return text


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       box-shadow: 0 0 12px rgba(0,0,0,.06); min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e4e7ec; }
h3 { font-size: 16px; margin: 20px 0 8px; }
.dim { color: #6a7282; font-size: 13px; }
.lead { max-width: 860px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e4e7ec; text-align: left;
         vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.samples td { text-align: center; vertical-align: middle; }
table.samples td:first-child { text-align: left; }
img.grid { width: 300px; max-width: 27vw; image-rendering: pixelated; border: 1px solid #d0d5dd; }
img.plot { max-width: 100%; }
.pair { display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }
.pair > div:last-child { flex: 1; min-width: 380px; }
.figures { display: flex; gap: 20px; flex-wrap: wrap; }
figure { margin: 0; text-align: center; }
figure img { width: 380px; }
figcaption { font-size: 13px; color: #6a7282; }
.ok { color: #137333; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.na { color: #8a6d00; font-weight: 600; }
.seeds { color: #6a7282; font-size: 12px; }
ul.notes { font-size: 13px; color: #4a5262; margin: 6px 0; padding-left: 20px; }
details { margin: 6px 0; } summary { cursor: pointer; }
pre { background: #f6f7f9; padding: 10px; font-size: 12px; overflow-x: auto; }
#image-check { display: none; }
"""

IMAGE_CHECK = """
<script>
window.addEventListener("load", function () {
  var images = document.images, broken = 0;
  for (var i = 0; i < images.length; i++) {
    if (!images[i].complete || images[i].naturalWidth === 0) broken++;
  }
  var check = document.getElementById("image-check");
  check.setAttribute("data-images", images.length);
  check.setAttribute("data-broken", broken);
  check.textContent = broken + " of " + images.length + " images failed to load";
});
</script>
"""


def build_report(
    run_dirs: list[Path],
    out: Path,
    *,
    title: str | None = None,
    description: str = "",
    claims: list[Claim] | None = None,
    names: list[str] | None = None,
    seeds: list[int] | None = None,
    experiment: str | None = None,
) -> list[Outcome]:
    """Write the HTML report of `run_dirs` to `out` (atomically). Returns the claims' outcomes.

    Each of `run_dirs` is a run directory, or a directory of seed-S run directories (an
    experiment's run trained with several seeds: of `seeds` when given, else all there)."""
    if not run_dirs:
        raise GenaeError("report: no run directories given")
    groups = [read_group(p, n, seeds) for p, n in zip(run_dirs, names or [None] * len(run_dirs))]
    seen: dict[str, int] = {}
    for group in groups:  # two runs called "run" in different parents get distinct labels
        seen[group.name] = seen.get(group.name, 0) + 1
        if seen[group.name] > 1:
            group.name = f"{group.name} ({group.path.parent.name})"
    datasets = sorted({g.dataset for g in groups})
    title = title or "genae report: " + ", ".join(g.name for g in groups)
    outcome = check_claims(claims or [], {g.name: g.runs for g in groups})
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"dataset {', '.join(datasets)}", f"genae {__version__}", stamp]
    if experiment:
        meta.insert(0, f"experiment {experiment}")
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p class='dim'>{esc(' · '.join(meta))}</p>",
        f"<p class='lead'>{esc(description)}</p>" if description else "",
        f"<p class='lead settings'>{esc(settings_text(groups))}</p>",
        claims_section(outcome),
        metrics_section(groups),
        samples_section(groups),
        curves_section(groups),
        conditional_section(groups),
        pictures_section(groups),
        configs_section(groups),
        '<p id="image-check" data-broken="-1"></p>',
    ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main>{IMAGE_CHECK}</body></html>\n"
    )
    write_text_atomic(out, page)
    return outcome
