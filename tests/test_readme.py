"""Every command in the README's code blocks, run in README order (issue 16: the README's
examples are tests, so a README command that stops working fails `make test`).

What counts as a command: in a ```sh block each line (backslash continuations joined, `# ...`
comments dropped) that starts with `genae`, `python`, `torchrun` or `make`; a ```python block
is one command, the whole block. Any other line in a ```sh block, a block in another language
that could hold commands, or a command none of the rules below handles fails
`test_every_readme_command_is_handled`: nothing is skipped silently. The substitutions are
applied here, never by editing the README; each row of SUBSTITUTIONS must be used by some README
command (a stale row fails too), so the table is exactly what differs from the README.

How they run: in one temporary directory, in order (later commands use what earlier ones wrote:
`genae evaluate runs/vae`), with `GENAE_DATA_DIR` in it (the domain classifier trained for fid
is cached there and reused by the later commands) and no network. `genae ...` runs in-process
through `genae.cli.main(argv)`; `python ...` and `torchrun ...` lines and the ```python block
run as subprocesses of this interpreter. Each must exit 0 and write what its `--out` names.
Run the whole file: a command selected alone (-k) lacks the runs of the commands before it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from genae.cli import main
from genae.data import download
from genae.data.sources import load_dataset
from genae.errors import DataError

# --- what the test changes, one row each: (applies to, README has, run with, why) -----------
# fmt: off
SUBSTITUTIONS: dict[str, tuple[str, str, str, str]] = {
    "digits": ("genae train/experiment, torchrun", "--dataset fashion-mnist (or mnist)", "--dataset digits", "embedded 8x8 digits: offline, ~1 s a run instead of minutes on 60,000 28x28 images; its judge (fid, conditional_accuracy) trains in ~3 s"),  # noqa: E501
    "default-dataset": ("genae train (not --resume) / experiment without --dataset", "the default dataset (fashion-mnist)", "--dataset digits", "as above; a resumed run keeps its own dataset"),  # noqa: E501
    "epochs": ("genae train/experiment/demo", "--epochs N, or none (train: 10, demo: 5)", "--epochs 1", "one epoch runs every code path of the command"),  # noqa: E501
    "resume-epochs": ("genae train --resume", "--epochs N", "--epochs 2", "one epoch more than the run it continues, which was trained for 1"),  # noqa: E501
    "iw-samples": ("genae evaluate", "--iw-samples 1000", "--iw-samples 5", "k posterior samples per test image: 5 run the same code"),  # noqa: E501
    "samples": ("genae evaluate", "--samples 10000", "--samples 200", "generated images: 20 per class run the same code"),  # noqa: E501
    "compile": ("genae train --compile", "torch.compile(step)", "torch.compile(step, backend='eager')", "dynamo still traces the training step; inductor's C++ code generation costs ~20 s CPU (~60 s wall on a shared 2-core VM)"),  # noqa: E501
    "torchrun": ("torchrun", "torchrun --nproc-per-node 2", "python -m torch.distributed.run --standalone --nproc-per-node 2", "torchrun is that module's script (this interpreter's torch, .venv/bin on PATH or not); --standalone takes a free port, not 29500, so parallel runs do not collide"),  # noqa: E501
    "benchmark": ("python benchmarks/throughput.py", "all families, 10 s per way, pythae", "REPO/benchmarks/throughput.py --families vae --seconds 0.3 --rounds 1 --skip-pythae", "seconds instead of minutes; pythae is the optional bench extra, not in make test's venv; the path is the clone's (commands run in a temporary directory)"),  # noqa: E501
    "demo": ("make demo", "make demo", "genae demo --out demo-out --epochs 1 (the Makefile's recipe, checked)", "make would also build .venv and install the data, as CI's make test does; 1 epoch instead of 5"),  # noqa: E501
    "arrays": ("```python", "my_uint8_images, my_labels (the user's)", "200 random 8x8 uint8 images and labels 0..9, defined before the block", "the example's placeholders for the user's data"),  # noqa: E501
}
# README commands not run here, and why.
SKIP: dict[str, str] = {
    "make test": "the test suite itself, which this file is part of; CI (.ci/run) runs it",
}
# fmt: on
# ----------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
PYTHON_LANGUAGES = {"python", "py"}
DATA_LANGUAGES = {"toml", "json", "text", "txt", "yaml", "ini", "csv"}  # never commands
HEADS = ("genae", "python", "torchrun", "make")
GENAE_COMMANDS = {"train", "evaluate", "sample", "experiment", "report", "datasets", "demo"}
# Arguments added to a README `python SCRIPT` line (row "benchmark" of SUBSTITUTIONS).
SCRIPTS = {
    "benchmarks/throughput.py": shlex.split("--families vae --seconds 0.3 --rounds 1 --skip-pythae")
}
PYTHON_PRELUDE = """\
import numpy as np
_rng = np.random.default_rng(0)
my_uint8_images = _rng.integers(0, 256, size=(200, 8, 8), dtype=np.uint8)
my_labels = _rng.integers(0, 10, size=200)
"""
SMALL = {"--iw-samples": ("iw-samples", 5), "--samples": ("samples", 200)}
TIMEOUT_S = 300


# --- extraction -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str  # as the README has it (a sh line with continuations joined, or a python block)
    language: str  # "sh" or "python"
    line: int  # README line where it starts


def readme_commands(text: str) -> tuple[list[Command], list[str]]:
    """The commands of `text`'s fenced blocks, and a problem for each line or block that looks
    like it could be a command but is not one this file knows how to treat."""
    commands, problems = [], []
    for match in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        language, body = match.group(1).lower(), match.group(2)
        start = text.count("\n", 0, match.start(2)) + 1
        if language in PYTHON_LANGUAGES:
            commands.append(Command(body, "python", start))
        elif language in SHELL_LANGUAGES:
            pending, first = "", start
            for number, raw in enumerate(body.splitlines(), start):
                if not pending:
                    first = number
                line = pending + raw
                if line.rstrip().endswith("\\"):
                    pending = line.rstrip()[:-1] + " "
                    continue
                pending = ""
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                if stripped.split()[0] in HEADS:
                    commands.append(Command(" ".join(stripped.split()), "sh", first))
                else:
                    problems.append(f"README line {first}: not a command this test runs: {line}")
        elif language not in DATA_LANGUAGES:
            problems.append(
                f"README line {start}: a ```{language} block; add its language to "
                "SHELL_LANGUAGES, PYTHON_LANGUAGES or DATA_LANGUAGES in tests/test_readme.py"
            )
    return commands, problems


# --- what each command becomes --------------------------------------------------------------


class Unhandled(Exception):
    """A README command no rule of this file covers."""


@dataclass
class Plan:
    kind: str  # "genae" (in-process), "subprocess", "python" (a block), "skip"
    argv: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # SUBSTITUTIONS keys applied
    reason: str = ""  # for "skip"


def _split_equals(argv: list[str]) -> list[str]:
    """`--flag=value` as `--flag value`, so the rules see one form."""
    out = []
    for argument in argv:
        if argument.startswith("--") and "=" in argument:
            out.extend(argument.split("=", 1))
        else:
            out.append(argument)
    return out


def _set_option(argv: list[str], flag: str, value: str) -> bool:
    """Set `flag`'s value in place; False when `flag` is not in argv."""
    if flag not in argv:
        return False
    argv[argv.index(flag) + 1] = value
    return True


def genae_args(args: list[str]) -> tuple[list[str], set[str]]:
    """The arguments of a `genae` command line with the substitutions applied."""
    args, used = _split_equals(args), set()
    if not args or args[0] not in GENAE_COMMANDS:
        raise Unhandled(f"unknown genae command {args[:1]}")
    command, resume = args[0], "--resume" in args
    if command in ("train", "experiment"):
        if "--dataset" in args:
            if args[args.index("--dataset") + 1] in ("fashion-mnist", "mnist"):
                _set_option(args, "--dataset", "digits")
                used.add("digits")
        elif not resume:
            args += ["--dataset", "digits"]
            used.add("default-dataset")
    if command in ("train", "experiment", "demo"):
        key, epochs = ("resume-epochs", "2") if resume else ("epochs", "1")
        if not _set_option(args, "--epochs", epochs):
            args += ["--epochs", epochs]
        used.add(key)
    if command == "train" and "--compile" in args:
        used.add("compile")
    for flag, (key, small) in SMALL.items():
        if command == "evaluate" and flag in args and int(args[args.index(flag) + 1]) > small:
            _set_option(args, flag, str(small))
            used.add(key)
    return args, used


def demo_recipe() -> list[str]:
    """The `genae ...` arguments of the Makefile's `demo` recipe."""
    recipe = re.search(r"^demo:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE.read_text(), re.M)
    assert recipe, "Makefile: no demo target"
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    genae = [line for line in lines if re.match(r"(\$\(BIN\)/)?genae ", line)]
    assert len(genae) == 1, f"Makefile demo recipe: expected one genae command, got {lines}"
    return shlex.split(genae[0])[1:]


def plan(command: Command) -> Plan:
    if command.language == "python":
        return Plan("python", used={"arrays"})
    argv = shlex.split(command.text, comments=True)
    head = argv[0]
    if shlex.join(argv) in SKIP:
        return Plan("skip", used={shlex.join(argv)}, reason=SKIP[shlex.join(argv)])
    if head == "genae":
        args, used = genae_args(argv[1:])
        return Plan("genae", args, used)
    if head == "make" and argv[1:] == ["demo"]:
        args, used = genae_args(demo_recipe())
        return Plan("genae", args, used | {"demo"})
    if head == "torchrun":
        argv = _split_equals(argv)
        if "-m" not in argv or argv[argv.index("-m") + 1] != "genae":
            raise Unhandled("torchrun of something other than -m genae")
        at = argv.index("-m")
        args, used = genae_args(argv[at + 2 :])
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", *argv[1:at]]
        return Plan("subprocess", [*launcher, "-m", "genae", *args], used | {"torchrun"})
    if head == "python" and len(argv) >= 2 and argv[1] in SCRIPTS:
        script = str(REPO / argv[1])
        argv = [sys.executable, script, *argv[2:], *SCRIPTS[argv[1]]]
        return Plan("subprocess", argv, {"benchmark"})
    raise Unhandled("no rule for it")


COMMANDS, PROBLEMS = readme_commands(README.read_text())


def _id(command: Command) -> str:
    first = command.text.strip().splitlines()[0] if command.language == "sh" else "python block"
    return f"L{command.line}:{first[:60]}"


# --- the tests --------------------------------------------------------------------------------


def test_every_readme_command_is_handled() -> None:
    """Each command of the README is run or skipped with a reason, every substitution row and
    SKIP entry is in use, and nothing in a code block escapes the extraction."""
    problems = list(PROBLEMS)
    used: set[str] = set()
    for command in COMMANDS:
        try:
            step = plan(command)
        except Unhandled as exc:
            problems.append(
                f"README line {command.line}: {command.text!r}: {exc}; add a rule or a SKIP "
                "entry with its reason to tests/test_readme.py"
            )
            continue
        used |= step.used
    unused = sorted(set(SUBSTITUTIONS) - used)
    problems += [f"SUBSTITUTIONS row {key!r} is used by no README command" for key in unused]
    problems += [f"SKIP entry {key!r} is no README command" for key in sorted(set(SKIP) - used)]
    assert not problems, "\n".join(problems)
    assert any(c.language == "python" for c in COMMANDS)
    assert sum(c.language == "sh" for c in COMMANDS) >= 10


def test_extraction_joins_continuations_and_drops_comments() -> None:
    text = (
        "```sh\ngenae train vae --a 1 \\\n    --b 2   # note\n\nmake demo\n```\n"
        "```python\nx = 1\n```\n```sh\nls -l\n```\n```rust\nfn main() {}\n```\n"
    )
    commands, problems = readme_commands(text)
    assert [(c.text, c.language, c.line) for c in commands] == [
        ("genae train vae --a 1 --b 2 # note", "sh", 2),
        ("make demo", "sh", 5),
        ("x = 1\n", "python", 8),
    ]
    assert shlex.split(commands[0].text, comments=True) == [
        "genae",
        "train",
        "vae",
        "--a",
        "1",
        "--b",
        "2",
    ]
    assert len(problems) == 2 and "ls -l" in problems[0] and "```rust" in problems[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def _no_network(url: str, dest: Path) -> None:
    raise urllib.error.URLError(f"tests/test_readme.py runs offline (asked for {url})")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _check_outputs(args: list[str], stdout: str) -> None:
    """What the command says it writes is there."""
    if "--out" in args:
        out = Path(args[args.index("--out") + 1])
        assert out.exists(), f"{out} was not written"
    if args[:1] == ["evaluate"]:
        if "--save" in args:
            assert (Path(args[1]) / "evaluation.json").is_file()
        if "--json" in args:
            json.loads(stdout)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_readme_command_runs(
    command: Command,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    step = plan(command)
    if step.kind == "skip":
        pytest.skip(f"README: {command.text}: {step.reason}")
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("GENAE_DATA_DIR", str(workdir / "cache"))
    env = dict(os.environ)

    if step.kind == "genae":
        monkeypatch.setattr(download, "fetch", _no_network)
        if "compile" in step.used:
            monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
        try:
            code = main(step.argv)
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        shown = f"genae {shlex.join(step.argv)}"
        assert code == 0, f"{shown} exited {code}:\n{_tail(captured.out)}\n{_tail(captured.err)}"
        _check_outputs(step.argv, captured.out)
        return

    if step.kind == "python":
        script = workdir / "readme_example.py"
        script.write_text(PYTHON_PRELUDE + command.text)
        argv, shown = [sys.executable, str(script)], "the README's python block"
    else:
        argv, shown = step.argv, shlex.join(step.argv)
        if "benchmark" in step.used:
            try:  # the benchmark measures on Fashion-MNIST (never downloaded)
                load_dataset("fashion-mnist", download=False)
            except DataError as exc:
                pytest.skip(f"{command.text}: needs Fashion-MNIST, not installed here: {exc}")
    result = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, (
        f"{shown} exited {result.returncode}:\n{_tail(result.stdout)}\n{_tail(result.stderr)}"
    )
    if step.kind == "subprocess" and "-m" in argv and "genae" in argv:
        _check_outputs(argv[argv.index("genae") + 1 :], "")
