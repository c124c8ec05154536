"""Shared fixtures.

`offline_data` keeps a test away from the network, the real ~/.cache/genae and the system
dataset directories (the same isolation tests/test_datasets.py applies to all of its tests with
its own autouse fixture). It is not autouse here: request it, or wrap it in an autouse fixture
of the module.

`repo_script` imports a script of the repository (benchmarks/, scripts/) as a module, so its
functions can be tested without a subprocess.

`compile_without_codegen` makes `torch.compile` trace with the aot_eager backend: the same dynamo
and autograd tracing as inductor (what `--compile` can break), without its C++ code generation
(~20 s of CPU a graph).
"""

from __future__ import annotations

import importlib.util
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from genae.data import download, sources

REPO_ROOT = Path(__file__).resolve().parents[1]


class OfflineFetch:
    """A `download.fetch` that fails like a machine without network, recording what was asked."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        raise urllib.error.URLError("simulated: no network")


@pytest.fixture
def offline_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFetch:
    """Cache in tmp_path/cache, empty system dirs, and no downloads (returns the fake fetch)."""
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    for name in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(sources.SYSTEM_DIRS, name, (tmp_path / "system" / name,))
    offline = OfflineFetch()
    monkeypatch.setattr(download, "fetch", offline)
    return offline


@pytest.fixture(scope="session")
def repo_script() -> Callable[[str], ModuleType]:
    """Import the script at a path relative to the repository root, e.g. 'scripts/x.py'."""

    def load(relative_path: str) -> ModuleType:
        path = REPO_ROOT / relative_path
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def compile_without_codegen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable]]:
    """`torch.compile` with backend aot_eager for the test, dynamo's caches cleared before and
    after; returns the functions compiled, in order."""
    compiled: list[Callable] = []
    compile_for_real = torch.compile

    def compile_traced(fn: Callable, **options) -> Callable:
        compiled.append(fn)
        return compile_for_real(fn, backend="aot_eager", **options)

    monkeypatch.setattr(torch, "compile", compile_traced)
    torch._dynamo.reset()
    yield compiled
    torch._dynamo.reset()
