"""The package's import structure, read from the source with `ast`: no import cycles between genae
modules, imports only point down the layer order, and no imports hidden inside functions.

The layer table below is the one in docs/architecture.md (a test keeps the two equal). A module
may import modules of its own layer or of lower layers. genae/__init__.py is the package facade:
it may re-export from any layer, and no other genae module may import it (`import genae`, `from
genae import __version__`): a lower module would then depend on everything the facade loads.

A function-local import hides a dependency (usually a cycle or an upward import), so a genae
module is always imported at module level. Outside the facade, a function-local import is
allowed only for an optional heavy third-party dependency, with a one-line comment saying why.
There is deliberately no allow-list: fix the import, not the test.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src"  # the src layout: the package is src/genae
PACKAGE = "genae"
ARCHITECTURE_DOC = REPO / "docs" / "architecture.md"

# Lowest first. An entry names a module or a package (which covers everything below it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "genae.errors",
            "genae.config",
            "genae.io",
            "genae.version",
            "genae.scores",
            "genae.runtime",
        ),
    ),
    ("data", ("genae.data",)),
    ("nn", ("genae.nn",)),
    ("models", ("genae.models",)),
    ("viz", ("genae.viz",)),
    ("training", ("genae.training",)),
    ("metrics", ("genae.metrics",)),
    ("api", ("genae.api",)),
    ("report", ("genae.claims", "genae.report")),
    ("experiments", ("genae.experiments", "genae.demo")),
    ("commands", ("genae.commands",)),
    ("entry", ("genae.cli", "genae.__main__")),
]
# The entry point sets the process up (OpenMP environment, threads) before torch loads, so it
# alone imports the commands inside main(), with a comment saying why. Nothing imports the entry
# layer, so such an import can hide neither a cycle nor an upward import.
LATE_IMPORT_LAYER = "entry"
FACADE = "genae"  # genae/__init__.py

# Comment text that is a tool directive rather than a reason.
DIRECTIVE = re.compile(r"noqa(:\s*[A-Z0-9, ]+)?|type:\s*ignore(\[[^\]]*\])?|pragma:[^#]*", re.I)


@dataclass(frozen=True)
class Import:
    """One import statement's reference to one module."""

    module: str  # the importing module
    path: Path  # its file
    line: int
    target: str  # the imported module (for `from a.b import c`: a.b.c if that is a module)
    statement: str  # the source text of the import, on one line
    function: str | None  # the enclosing function's qualified name; None: module level
    reason: str | None  # the comment next to the import, directives removed


@dataclass(frozen=True)
class Layer:
    index: int
    name: str


# --- reading the source -------------------------------------------------------------------------


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file of every module under root/package (a package is its __init__.py)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _import_groups(tree: ast.AST) -> dict[int, ast.stmt]:
    """id(import statement) -> the first statement of its run of consecutive imports."""
    heads: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            head = None
            for statement in statements:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    head = head or statement
                    heads[id(statement)] = head
                else:
                    head = None
    return heads


def _reason(
    node: ast.stmt, head: ast.stmt, comments: dict[int, str], lines: list[str]
) -> str | None:
    """The comment on the import's own lines, on the first line of its run of imports, or on a
    comment-only line right above that run (one reason may cover `import a` + `import a.b`)."""
    candidates = [comments.get(n) for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)]
    candidates.append(comments.get(head.lineno))
    above = head.lineno - 1
    if above >= 1 and lines[above - 1].lstrip().startswith("#"):
        candidates.append(comments.get(above))
    for text in candidates:
        reason = DIRECTIVE.sub("", text or "").strip(" ()")
        if reason:
            return reason
    return None


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join(base + ([name] if name else []))


class _ImportVisitor(ast.NodeVisitor):
    def __init__(
        self, module: str, path: Path, modules: set[str], source: str, tree: ast.AST
    ) -> None:
        self.module = module
        self.path = path
        self.modules = modules
        self.is_package = path.name == "__init__.py"
        self.comments = _comments(source)
        self.lines = source.splitlines()
        self.group_heads = _import_groups(tree)
        self.scope: list[tuple[str, bool]] = []  # (name, is a function)
        self.found: list[Import] = []

    def _function(self) -> str | None:
        if not any(is_function for _, is_function in self.scope):
            return None
        return ".".join(name for name, _ in self.scope)

    def _add(self, node: ast.AST, target: str, statement: str) -> None:
        reason = None
        if isinstance(node, ast.stmt):
            reason = _reason(node, self.group_heads[id(node)], self.comments, self.lines)
        self.found.append(
            Import(self.module, self.path, node.lineno, target, statement, self._function(), reason)
        )

    def _scoped(self, node: ast.AST, name: str, is_function: bool) -> None:
        self.scope.append((name, is_function))
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name, True)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name, True)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scoped(node, "<lambda>", True)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name, False)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name, f"import {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = _resolve_relative(self.module, self.is_package, node.level, node.module)
        else:
            base = node.module or ""
        # One entry per imported module: `from a import b, c` names module a.b, or module a.
        names_by_target: dict[str, list[str]] = defaultdict(list)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            names_by_target[submodule if submodule in self.modules else base].append(alias.name)
        for target, names in names_by_target.items():
            statement = f"from {'.' * node.level}{node.module or ''} import {', '.join(names)}"
            self._add(node, target, statement)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("genae.x") and __import__("genae.x") are imports too.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(node, first.value, f"{name}({first.value!r})")
        self.generic_visit(node)


def read_imports(root: Path, package: str) -> tuple[dict[str, Path], list[Import]]:
    """Every module of the package, and every import statement in it, wherever it stands."""
    modules = module_files(root, package)
    imports = []
    for module, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        visitor = _ImportVisitor(module, path, set(modules), source, tree)
        visitor.visit(tree)
        imports.extend(visitor.found)
    return modules, imports


def is_internal(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def where(imp: Import, root: Path) -> str:
    return f"{imp.path.relative_to(root)}:{imp.line}"


# --- the rules ------------------------------------------------------------------------------


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> Layer | None:
    """The layer of the longest table entry that is the module or a package above it."""
    best: tuple[int, Layer] | None = None
    for index, (name, entries) in enumerate(layers):
        for entry in entries:
            covers = module == entry or module.startswith(entry + ".")
            if covers and (best is None or len(entry) > best[0]):
                best = (len(entry), Layer(index, name))
    return best[1] if best else None


def unlayered_modules(
    modules: dict[str, Path], layers: list[tuple[str, tuple[str, ...]]], facade: str
) -> list[str]:
    return [
        f"{module} ({path}): in no layer; add it to LAYERS in tests/test_layers.py and to "
        f"the layer table in docs/architecture.md"
        for module, path in modules.items()
        if module != facade and layer_of(module, layers) is None
    ]


def layer_violations(
    imports: list[Import],
    layers: list[tuple[str, tuple[str, ...]]],
    facade: str,
    root: Path,
) -> list[str]:
    """Imports of genae modules that point up the layer order, or at the facade."""
    problems = []
    for imp in imports:
        if imp.module == facade or not is_internal(imp.target, facade):
            continue
        if imp.target == facade:
            problems.append(
                f"{where(imp, root)}: {imp.module} imports the package facade '{facade}' "
                f"(`{imp.statement}`); import the module that defines the name instead"
            )
            continue
        source, target = layer_of(imp.module, layers), layer_of(imp.target, layers)
        if source is None or target is None:
            continue  # reported by unlayered_modules
        if target.index > source.index:
            problems.append(
                f"{where(imp, root)}: {imp.module} (L{source.index} {source.name}) imports "
                f"{imp.target} (L{target.index} {target.name}), a higher layer "
                f"(`{imp.statement}`)"
            )
    return problems


def import_cycles(imports: list[Import], package: str, root: Path) -> list[str]:
    """One message per strongly connected set of modules, showing one cycle through it."""
    first_edge: dict[tuple[str, str], Import] = {}
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if is_internal(imp.target, package):
            graph[imp.module].add(imp.target)
            first_edge.setdefault((imp.module, imp.target), imp)
    problems = []
    for component in _strongly_connected(graph):
        start = min(component)
        if len(component) == 1 and start not in graph[start]:
            continue
        cycle = _shortest_cycle(graph, start, component)
        steps = []
        for source, target in zip(cycle, cycle[1:]):
            imp = first_edge[(source, target)]
            local = f", inside {imp.function}()" if imp.function else ""
            steps.append(f"{source} -> {target} ({where(imp, root)}{local})")
        members = ", ".join(sorted(component))
        problems.append(f"import cycle: {'; '.join(steps)}  [modules in the cycle: {members}]")
    return problems


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle(graph: dict[str, set[str]], start: str, component: set[str]) -> list[str]:
    """start -> ... -> start, the fewest steps, within the component (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child in component and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a cycle but none was found")


def local_import_violations(imports: list[Import], facade: str, root: Path) -> list[str]:
    """Function-local imports: never of genae modules (outside the facade's lazy re-exports and
    the entry point's one late import, with its reason);
    of anything else only for an optional heavy third-party dependency, with a reason."""
    problems = []
    for imp in imports:
        if imp.function is None:
            continue
        top = imp.target.split(".")[0]
        head = f"{where(imp, root)}: {imp.function}() in {imp.module} imports {imp.target}"
        if is_internal(imp.target, facade):
            layer = layer_of(imp.module, LAYERS)
            late_allowed = (
                layer is not None and layer.name == LATE_IMPORT_LAYER and imp.reason is not None
            )
            if imp.module != facade and not late_allowed:
                problems.append(
                    f"{head} inside a function (`{imp.statement}`); import genae modules at "
                    f"module level (a local import hides a cycle or an upward import)"
                )
        elif top in sys.stdlib_module_names or top == "__future__":
            problems.append(
                f"{head} inside a function (`{imp.statement}`); the standard library is "
                f"imported at module level"
            )
        elif imp.reason is None:
            problems.append(
                f"{head} inside a function (`{imp.statement}`) without a one-line comment "
                f"saying why (allowed only for optional heavy third-party dependencies)"
            )
    return problems


# --- the package ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package() -> tuple[dict[str, Path], list[Import]]:
    return read_imports(SOURCE, PACKAGE)


def _fail(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{len(problems)} {what}:\n" + "\n".join(problems), pytrace=False)


def test_every_module_is_in_a_layer(package):
    modules, _ = package
    _fail(unlayered_modules(modules, LAYERS, FACADE), "modules without a layer")


def test_no_import_cycles(package):
    _, imports = package
    _fail(import_cycles(imports, PACKAGE, REPO), "import cycles")


def test_imports_point_down_the_layers(package):
    _, imports = package
    _fail(layer_violations(imports, LAYERS, FACADE, REPO), "imports against the layer order")


def test_function_local_imports_only_for_optional_heavy_dependencies(package):
    _, imports = package
    _fail(local_import_violations(imports, FACADE, REPO), "function-local imports")


def render_layer_table(layers: list[tuple[str, tuple[str, ...]]]) -> str:
    """The layer table as docs/architecture.md shows it."""
    return "\n".join(
        f"L{index:<3}{name:<12}{', '.join(entries)}" for index, (name, entries) in enumerate(layers)
    )


def test_the_architecture_doc_shows_this_layer_table():
    table = render_layer_table(LAYERS)
    assert table in ARCHITECTURE_DOC.read_text(), (
        f"docs/architecture.md must contain the layer table of tests/test_layers.py:\n{table}"
    )


def documented_modules(doc: str) -> set[str]:
    """The files of the module map (the first code block of the doc: an indented tree of
    `name/` folders and `name.py` files, each followed by its description), as paths."""
    block = doc.split("```", 2)[1]
    paths: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, folder) from the root down
    for line in block.splitlines():
        words = line.split()
        if not words or not (words[0].endswith("/") or words[0].endswith(".py")):
            continue  # a description's continuation line
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        prefix = "".join(folder for _, folder in folders)
        if words[0].endswith("/"):
            folders.append((indent, words[0]))
        else:
            paths.add(prefix + words[0])
    return paths


def test_the_architecture_doc_lists_every_module_that_exists():
    documented = {
        p for p in documented_modules(ARCHITECTURE_DOC.read_text()) if p.startswith("genae/")
    }
    # A subpackage's __init__.py is described by its folder's line; the facade has its own.
    actual = {
        str(path.relative_to(SOURCE))
        for path in (SOURCE / PACKAGE).rglob("*.py")
        if path.name != "__init__.py" or path.parent == SOURCE / PACKAGE
    }
    assert not (actual - documented) and not (documented - actual), (
        f"docs/architecture.md module map: missing {sorted(actual - documented)}, "
        f"listed but absent {sorted(documented - actual)}"
    )


# --- the checker itself ---------------------------------------------------------------------

SYNTHETIC_LAYERS = [("low", ("pkg.low",)), ("high", ("pkg.high", "pkg.sub"))]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_cycle_an_upward_import_and_hidden_imports(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.high import run\n",
            "pkg/low.py": (
                "import json\n\n\n"
                "def helper():\n"
                "    from pkg.high import run\n"
                "    import scipy  # heavy, and only this plot needs it\n"
                "    import sklearn\n"
                "    import os\n"
                "    return run\n"
            ),
            "pkg/high.py": "from pkg import low\n\nrun = 1\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/deep.py": "from ..sub import deep as me\nimport pkg\n",
            "pkg/stray.py": "",
        },
    )
    modules, imports = read_imports(tmp_path, "pkg")

    assert set(modules) == {"pkg", "pkg.low", "pkg.high", "pkg.sub", "pkg.sub.deep", "pkg.stray"}
    assert unlayered_modules(modules, SYNTHETIC_LAYERS, "pkg")[0].startswith("pkg.stray ")

    upward = layer_violations(imports, SYNTHETIC_LAYERS, "pkg", tmp_path)
    assert upward == [
        "pkg/low.py:5: pkg.low (L0 low) imports pkg.high (L1 high), a higher layer "
        "(`from pkg.high import run`)",
        "pkg/sub/deep.py:2: pkg.sub.deep imports the package facade 'pkg' (`import pkg`); "
        "import the module that defines the name instead",
    ]

    cycles = import_cycles(imports, "pkg", tmp_path)
    assert len(cycles) == 2, cycles
    joined = "\n".join(cycles)
    # low <-> high, found although one side hides inside a function
    assert "pkg.high -> pkg.low (pkg/high.py:1)" in joined
    assert "pkg.low -> pkg.high (pkg/low.py:5, inside helper())" in joined
    # a module importing itself through a relative import
    assert "pkg.sub.deep -> pkg.sub.deep (pkg/sub/deep.py:1)" in joined
    # the facade imports pkg.high, and pkg.sub.deep the facade: a path, not a cycle
    assert "pkg -> " not in joined

    local = local_import_violations(imports, "pkg", tmp_path)
    assert len(local) == 3, local
    assert local[0].startswith("pkg/low.py:5: helper() in pkg.low imports pkg.high inside")
    assert local[1].startswith("pkg/low.py:7: helper() in pkg.low imports sklearn inside")
    assert "without a one-line comment" in local[1]
    assert local[2].startswith("pkg/low.py:8: helper() in pkg.low imports os inside")
    assert "standard library" in local[2]


def test_the_checker_passes_a_clean_package(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": (
                "def __getattr__(name):\n"
                "    from pkg.high import run  # lazy re-export\n"
                "    return run\n"
            ),
            "pkg/low.py": "VALUE = 1\n",
            "pkg/high.py": (
                "from pkg.low import VALUE\nfrom . import low\n\n\n"
                "def run():\n"
                "    # matplotlib: optional and slow to import, only plots need it\n"
                "    import matplotlib\n"
                "    import matplotlib.pyplot\n"
                "    return matplotlib, VALUE, low\n"
            ),
            "pkg/sub/__init__.py": "",
        },
    )
    modules, imports = read_imports(tmp_path, "pkg")
    assert unlayered_modules(modules, SYNTHETIC_LAYERS, "pkg") == []
    assert layer_violations(imports, SYNTHETIC_LAYERS, "pkg", tmp_path) == []
    assert import_cycles(imports, "pkg", tmp_path) == []
    assert local_import_violations(imports, "pkg", tmp_path) == []
