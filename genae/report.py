"""`genae report RUN_DIR... --out report.html`: one self-contained HTML page comparing runs.

Everything is inline (images as base64 data URIs, CSS, one small script), so the file works
offline and can be mailed around. Sections, each only where it applies:

* the claims an experiment checks, with their outcome;
* final metrics, with what each was computed on, and published numbers beside ours;
* sample grids by epoch: one row per run, one column per snapshot epoch (like a paper's figure);
* test negative ELBO per epoch (table and curves);
* the pictures each run wrote after training (its test codes, class grids, relabel grids);
* each run's configuration.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genae.claims import Claim, Outcome, check_claims
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
    "reconstruction_judged_accuracy",
    "clustering_accuracy",
    "fid",
)
LOWER_IS_BETTER = {"neg_elbo", "iw_nll", "recon_nll", "recon_mse", "fid", "nll"}


@dataclass
class RunInfo:
    """A run directory as the report reads it (a `genae.claims.RunRecord`)."""

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

    def final(self) -> dict[str, Any]:
        """The last epoch's metrics, overridden by a later evaluation of the finished run."""
        values = dict(self.history[-1]) if self.history else {}
        values.update({k: v for k, v in self.evaluation.items() if isinstance(v, (int, float))})
        return values


def read_run(path: Path, name: str | None = None) -> RunInfo:
    path = Path(path)
    config = rundir.read_run_config(path)
    try:
        lines = (path / rundir.METRICS_FILE).read_text().splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        history = []
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path / rundir.METRICS_FILE}: not valid JSON lines ({exc})"
        ) from None
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
        if key == "per_class":
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
    rows = [[esc(o.text), marks[o.ok], esc(o.detail)] for o in outcomes]
    return "<h2>Claims</h2>" + table(["claim", "outcome", "numbers"], rows, numeric_from=99)


def samples_section(runs: list[RunInfo]) -> str:
    epochs = sorted({e for r in runs for e in r.grids})
    if not epochs:
        return ""
    head = ["run"] + [f"epoch {e}" for e in epochs]
    rows = []
    for run in runs:
        cells = [f"<b>{esc(run.name)}</b><br><span class='dim'>{esc(run.model)}</span>"]
        for e in epochs:
            png = run.grids.get(e)
            if png is None:
                cells.append("<span class='dim'>—</span>")
            else:
                alt = f"{run.name} samples, epoch {e}"
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


def metrics_section(runs: list[RunInfo]) -> str:
    finals = {r.name: r.final() for r in runs}
    present = {k for f in finals.values() for k, v in f.items() if isinstance(v, (int, float))}
    skip = {"epoch", "step", "examples"}
    names = [m for m in PREFERRED if m in present]
    names += sorted(m for m in present - set(names) - skip if not m.startswith("train_"))
    if not names:
        return ""
    head = ["run", "model", "epochs"] + [
        f"{esc(m)} {'↓' if m in LOWER_IS_BETTER else '↑' if 'accuracy' in m else ''}" for m in names
    ]
    rows, anchors, notes = [], [], []
    for run in runs:
        final = finals[run.name]
        row = [f"<b>{esc(run.name)}</b>", esc(run.model), esc(final.get("epoch", "—"))]
        for m in names:
            row.append(fmt(final[m]) if m in final else "<span class='dim'>—</span>")
            anchor = anchor_for(run.model, run.dataset, m)
            if anchor is not None:
                anchors.append(
                    [
                        esc(run.name),
                        esc(m),
                        fmt(final.get(m, float("nan"))),
                        fmt(anchor.value),
                        esc(anchor.source),
                        esc(anchor.setting),
                    ]
                )
        rows.append(row)
        # Metrics computed on the same thing share one line.
        groups: dict[str, list[str]] = {}
        for metric, about in run.evaluation.get("computed_on", {}).items():
            groups.setdefault(about_text(about), []).append(metric)
            if "per_class" in about:
                names = run.config.get("data_spec", {}).get("class_names") or []
                per_class = ", ".join(
                    f"{names[k] if k < len(names) else k} {v:.2f}"
                    for k, v in enumerate(about["per_class"])
                )
                notes.append(
                    f"<li><b>{esc(run.name)}</b> {esc(metric)} per class: {per_class}</li>"
                )
        for about, metrics in groups.items():
            notes.append(f"<li><b>{esc(run.name)}</b> {esc(', '.join(metrics))}: {esc(about)}</li>")
    out = ["<h2>Final metrics</h2>", table(head, rows, numeric_from=2)]
    out.append(
        "<p class='dim'>Test split; ↓ lower is better, ↑ higher is better. neg_elbo, iw_nll and "
        "recon_nll in nats per image. Without other notes a number is the last epoch's "
        "evaluation on the whole test split.</p>"
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


def curve_metric(runs: list[RunInfo]) -> str | None:
    for metric in ("neg_elbo", "accuracy", "loss"):
        if all(run.history and metric in run.history[0] for run in runs):
            return metric
    return None


def curves_section(runs: list[RunInfo]) -> str:
    metric = curve_metric(runs)
    if metric is None:
        return ""
    series = {
        r.name: ([h["epoch"] for h in r.history], [h[metric] for h in r.history]) for r in runs
    }
    epochs = sorted({e for xs, _ in series.values() for e in xs})
    head = ["epoch"] + [esc(r.name) for r in runs]
    by_run = {name: dict(zip(xs, ys)) for name, (xs, ys) in series.items()}
    rows = []
    for e in epochs:
        values = [by_run[r.name].get(e) for r in runs]
        present = [v for v in values if v is not None]
        best = (min if metric in LOWER_IS_BETTER else max)(present) if present else None
        cells = [str(e)]
        for v in values:
            text = fmt(v) if v is not None else "—"
            cells.append(
                f"<b>{text}</b>" if v is not None and v == best and len(runs) > 1 else text
            )
        rows.append(cells)
    label = "test neg_elbo (nats/image)" if metric == "neg_elbo" else f"test {metric}"
    png = curves_png(series, label)
    return (
        f"<h2>Test {esc(metric)} per epoch</h2><div class='pair'>"
        f"<div>{table(head, rows)}</div>"
        f'<div><img class="plot" alt="{esc(label)} per epoch" src="{data_uri(png)}"></div></div>'
    )


PICTURE_CAPTIONS = {
    "latent.png": "test codes coloured by class (over the prior, where it is 2-D)",
    "class_grid.png": "samples, one row per class or category",
    "caae_grid.png": "first column: a test image; then the same code under each label",
}


def pictures_section(runs: list[RunInfo]) -> str:
    """The pictures each run wrote after training (`RUN_DIR/pictures`), e.g. an adversarial
    autoencoder's codes over its prior or a CAAE's label grid."""
    figures = []
    for run in runs:
        for png in sorted((run.path / rundir.PICTURES_DIR).glob("*.png")):
            caption = f"{run.name}: {PICTURE_CAPTIONS.get(png.name, png.stem)}"
            figures.append(
                f'<figure><img class="plot" alt="{esc(caption)}" '
                f'src="{data_uri(png.read_bytes())}"><figcaption>{esc(caption)}</figcaption>'
                "</figure>"
            )
    if not figures:
        return ""
    return "<h2>Pictures</h2><div class='figures'>" + "".join(figures) + "</div>"


def configs_section(runs: list[RunInfo]) -> str:
    out = ["<h2>Configurations</h2>"]
    for run in runs:
        shown = {
            k: run.config[k]
            for k in ("model", "model_config", "train", "genae_version")
            if k in run.config
        }
        out.append(
            f"<details><summary><b>{esc(run.name)}</b> — {esc(run.path)}</summary>"
            f"<pre>{esc(json.dumps(shown, indent=2, sort_keys=True))}</pre></details>"
        )
    return "".join(out)


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
    experiment: str | None = None,
) -> list[Outcome]:
    """Write the HTML report of `run_dirs` to `out` (atomically). Returns the claims' outcomes."""
    if not run_dirs:
        raise GenaeError("report: no run directories given")
    runs = [read_run(p, n) for p, n in zip(run_dirs, names or [None] * len(run_dirs))]
    seen: dict[str, int] = {}
    for run in runs:  # two runs called "run" in different parents get distinct labels
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name} ({run.path.parent.name})"
    datasets = sorted({r.dataset for r in runs})
    title = title or "genae report: " + ", ".join(r.name for r in runs)
    outcome = check_claims(claims or [], {r.name: r for r in runs})
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"dataset {', '.join(datasets)}", f"genae {__version__}", stamp]
    if experiment:
        meta.insert(0, f"experiment {experiment}")
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p class='dim'>{esc(' · '.join(meta))}</p>",
        f"<p class='lead'>{esc(description)}</p>" if description else "",
        claims_section(outcome),
        metrics_section(runs),
        samples_section(runs),
        curves_section(runs),
        pictures_section(runs),
        configs_section(runs),
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
