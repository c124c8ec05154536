"""genae's process settings (genae/runtime.py): threads, OpenMP wait policy, flushing denormals.

Whatever depends on the state of a fresh process (what torch loads with, the OpenMP workers'
floating-point mode) runs in a subprocess, since this test process has long loaded torch.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from genae import runtime
from genae.errors import ConfigError
from genae.runtime import (
    WAITING,
    ProcessRegistry,
    choose_threads,
    choose_waiting,
    configure_environment,
    other_runnable_tasks,
)

# Flushing is probed per thread: with torch at 2 threads, a parallel op over 2**20 elements
# gives the first half to the calling thread and the second half to an OpenMP worker. The input
# is subnormal by its bit pattern, so only a flushing thread turns it into zeros.
PROBE = textwrap.dedent(
    """
    import json, sys
    import torch

    def flushing():
        n = 1 << 20
        x = torch.full((n,), 1_000_000, dtype=torch.int32).view(torch.float32)
        y = x * 1.0
        return [bool((y[: n // 2] == 0).all()), bool((y[n // 2 :] == 0).all())]
    """
)


# torch.set_flush_denormal works on x86 only (the SSE MXCSR register)
x86_only = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="flushing denormals is x86-only"
)


def run_python(code: str, env: dict[str, str] | None = None, *args: str):
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OMP_", "GOMP_", "GENAE_THREADS", "GENAE_KEEP_DENORMALS"))
    }
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *args, "-c", code] if code else [sys.executable, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- choosing (pure) --------------------------------------------------------------------------


def test_default_is_torch_threads_with_passive_waiting():
    settings = choose_threads(["train", "vae"], {})
    assert (settings.threads, settings.ranks_per_host, settings.set_waiting) == (None, 1, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--threads", "3", "train", "vae"],
        ["train", "vae", "--threads=3"],
        ["evaluate", "--threads", "3"],
    ],
)
def test_threads_option_anywhere_wins_over_the_environment(argv):
    environ = {"GENAE_THREADS": "5", "OMP_NUM_THREADS": "7"}
    assert choose_threads(argv, environ).threads == 3


def test_genae_threads_wins_over_omp_num_threads():
    assert choose_threads([], {"GENAE_THREADS": "5", "OMP_NUM_THREADS": "7"}).threads == 5


def test_exported_omp_num_threads_is_left_to_torch():
    settings = choose_threads([], {"OMP_NUM_THREADS": "7", "LOCAL_WORLD_SIZE": "4"})
    assert (settings.threads, settings.ranks_per_host) == (None, 1)


def test_torchrun_ranks_on_one_host_divide_the_cores():
    assert choose_threads([], {"LOCAL_WORLD_SIZE": "4"}).ranks_per_host == 4


def test_genae_threads_off_sets_nothing():
    environ = {"GENAE_THREADS": "off"}
    settings = configure_environment(["--", "x"], environ)
    assert (settings.threads, settings.set_waiting) == (None, False)
    assert environ == {"GENAE_THREADS": "off"}


def test_environment_user_values_win_and_threads_option_is_exported():
    environ = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "7"}
    configure_environment(["train", "--threads", "2"], environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}
    environ = {}
    configure_environment([], environ, competition=lambda n: 5)
    assert environ == WAITING
    environ = {"GOMP_SPINCOUNT": "7"}
    configure_environment([], environ, competition=lambda n: 5)
    assert environ == {"GOMP_SPINCOUNT": "7"}


# --- the wait policy follows the load -----------------------------------------------------------


@pytest.mark.parametrize(
    ("competing", "threads", "passive"),
    [
        (0, 2, False),  # alone on 2 cores: spin, as torch does
        (1, 2, True),  # one other busy thread and 2 of ours on 2 cores: sleep
        (1, 1, False),  # one thread of ours fits beside it
        (2, 2, True),  # another 2-thread genae job
        (None, 2, True),  # the load cannot be read: assume company
    ],
)
def test_waiting_is_passive_only_when_the_cores_are_taken(competing, threads, passive):
    variables, why = choose_waiting(competing, threads, cores=2)
    assert variables == (WAITING if passive else {})
    assert why.startswith("passive" if passive else "spinning")


@pytest.mark.parametrize(
    ("argv", "environ", "threads"),
    [
        ([], {}, 2),  # torch's default: one per core
        (["--threads", "1"], {}, 1),
        ([], {"OMP_NUM_THREADS": "1"}, 1),
        ([], {"LOCAL_WORLD_SIZE": "2"}, 1),  # two ranks share the 2 cores
    ],
)
def test_the_competition_is_asked_about_the_threads_this_process_will_use(
    argv, environ, threads, monkeypatch
):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    asked = []
    configure_environment(argv, environ, competition=lambda n: asked.append(n) or 0)
    assert asked == [threads]


def test_waiting_left_to_the_user_or_off():
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_environment([], environ, competition=lambda n: 9).waiting == "the user's"
    environ = {"GENAE_THREADS": "off"}
    assert configure_environment([], environ, competition=lambda n: 9).waiting == "left alone"
    assert environ == {"GENAE_THREADS": "off"}


def test_registry_sees_live_processes_and_forgets_ended_ones(tmp_path):
    registry = ProcessRegistry(tmp_path)
    # another genae process: a child that registers with 3 threads, then waits to be told to end
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from genae.runtime import ProcessRegistry
        ProcessRegistry(Path({str(tmp_path)!r})).register(3)
        print("registered", flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "registered"
        registry.register(2)
        assert registry.other_threads() == 3  # itself not counted
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([str(child.pid), str(os.getpid())])
    finally:
        child.communicate("")
    assert registry.other_threads() == 0  # the lock died with the child
    assert [p.name for p in tmp_path.iterdir()] == [str(os.getpid())]


def test_competing_threads_takes_the_busier_count(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "other_runnable_tasks", lambda: 1)
    assert runtime.competing_threads(2, ProcessRegistry(tmp_path)) == 1
    monkeypatch.setattr(runtime, "other_runnable_tasks", lambda: None)
    (tmp_path / "sub").mkdir()
    assert runtime.competing_threads(2, ProcessRegistry(tmp_path / "sub")) == 0
    blocked = tmp_path / "file"
    blocked.write_text("")  # the registry cannot be made under a file, and no run queue
    assert runtime.competing_threads(2, ProcessRegistry(blocked / "sub")) is None


def test_other_runnable_tasks_reads_the_run_queue(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.52 0.58 0.59 3/219 12345\n")
    assert other_runnable_tasks(str(loadavg)) == 2  # the caller is one of the 3
    loadavg.write_text("garbage\n")
    assert other_runnable_tasks(str(loadavg)) is None
    assert other_runnable_tasks(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--threads", "0"], {}, "--threads: expected a positive integer, got '0'"),
        (["--threads=many"], {}, "--threads: expected a positive integer, got 'many'"),
        (["--threads"], {}, "--threads: expected a positive integer after it"),
        ([], {"GENAE_THREADS": "two"}, "GENAE_THREADS: expected a positive integer or 'off'"),
        ([], {"LOCAL_WORLD_SIZE": "-1"}, "LOCAL_WORLD_SIZE: expected a positive integer"),
    ],
)
def test_bad_thread_settings_are_one_line_errors(argv, environ, message):
    with pytest.raises(ConfigError, match=message):
        choose_threads(argv, environ)


# --- the library leaves a host program alone --------------------------------------------------


@x86_only
def test_import_genae_keeps_the_hosts_numerics():
    code = PROBE + textwrap.dedent(
        """
        torch.set_num_threads(2)
        before = flushing()
        import genae
        genae.load  # the lazy exports load the library proper
        import genae.models
        print(json.dumps({"before": before, "after": flushing()}))
        """
    )
    assert last_json(run_python(code)) == {"before": [False, False], "after": [False, False]}


def test_import_genae_and_its_cli_do_not_import_torch():
    code = "import sys, genae, genae.cli, genae.runtime; print('torch' in sys.modules)"
    assert run_python(code).stdout.strip() == "False"


@x86_only
def test_fit_flushes_denormals_in_all_its_threads_and_restores_them():
    code = PROBE + textwrap.dedent(
        """
        from genae.runtime import flushing_denormals
        torch.set_num_threads(2)
        before = flushing()
        with flushing_denormals():
            inside = flushing()
        print(json.dumps({"before": before, "inside": inside, "after": flushing()}))
        """
    )
    result = last_json(run_python(code))
    assert result == {"before": [False, False], "inside": [True, True], "after": [False, False]}


@x86_only
def test_genae_fit_trains_flushing_and_leaves_the_host_as_it_was():
    code = PROBE + textwrap.dedent(
        """
        import genae
        from genae.training.trainer import Trainer

        seen = []
        trainer_fit = Trainer.fit
        def spying_fit(self):
            seen.append(flushing())
            return trainer_fit(self)
        Trainer.fit = spying_fit
        torch.set_num_threads(2)
        before = flushing()
        config = {"dataset": "digits", "epochs": 1, "progress": False, "snapshot_epochs": []}
        genae.fit("vae", model_config={"hidden": [32], "latent_dim": 2}, train_config=config)
        print(json.dumps({"before": before, "inside": seen, "after": flushing()}))
        """
    )
    assert last_json(run_python(code)) == {
        "before": [False, False],
        "inside": [[True, True]],
        "after": [False, False],
    }


@x86_only
def test_a_host_that_flushes_already_is_left_flushing():
    code = PROBE + textwrap.dedent(
        """
        from genae.runtime import flushing_denormals
        torch.set_flush_denormal(True)
        with flushing_denormals():
            pass
        print(json.dumps({"after": flushing()[0]}))
        """
    )
    assert last_json(run_python(code)) == {"after": True}


# --- the genae command ------------------------------------------------------------------------


def runtime_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("genae runtime:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@x86_only
def test_cli_sets_the_waiting_before_torch_loads_and_flushes():
    # OMP_DISPLAY_ENV makes libgomp print the settings it read when torch loaded it; whichever
    # way the load made genae choose, libgomp must have read that choice.
    result = run_python(
        "", {"GENAE_SHOW_RUNTIME": "1", "OMP_DISPLAY_ENV": "TRUE"}, "-m", "genae", "datasets"
    )
    assert result.returncode == 0, result.stderr
    line = runtime_line(result)
    assert "flush_denormal True" in line
    if "waiting passive" in line:
        assert "OMP_WAIT_POLICY PASSIVE" in line
        assert "OMP_WAIT_POLICY = 'PASSIVE'" in result.stderr
    else:
        assert "waiting spinning" in line and "OMP_WAIT_POLICY unset" in line
        assert "OMP_WAIT_POLICY = 'PASSIVE'" not in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"GENAE_THREADS": "1"}, (), "threads 1 (GENAE_THREADS)"),
        ({"GENAE_THREADS": "2"}, ("--threads", "1"), "threads 1 (--threads)"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, (), "OMP_WAIT_POLICY ACTIVE"),
        ({"GENAE_THREADS": "off"}, (), "OMP_WAIT_POLICY unset"),
        ({"LOCAL_WORLD_SIZE": "64"}, (), "threads 1 (default / LOCAL_WORLD_SIZE=64)"),
    ],
)
def test_cli_honours_threads_settings(env, args, expected):
    result = run_python(
        "", {"GENAE_SHOW_RUNTIME": "1", **env}, "-m", "genae", "evaluate", "--help", *args
    )
    assert result.returncode == 0, result.stderr
    assert expected in runtime_line(result)


def test_cli_bad_genae_threads_is_a_usage_error():
    result = run_python("", {"GENAE_THREADS": "lots"}, "-m", "genae", "datasets")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "genae: error: GENAE_THREADS: expected a positive integer or 'off', got 'lots'"
    )
