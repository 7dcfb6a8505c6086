"""Architecture checks. The package has no import cycles: the module import graph of mergemix_jax (every `import` and
`from ... import`, module level and inside functions alike) has no strongly connected component of
more than one module. A shared piece belongs in the lower module both sides import; an import moved
into a function to dodge the cycle still counts here.

An import of a package (`from mergemix_jax.pipeline import X`) is an edge to its `__init__`; an
import of a submodule (`from mergemix_jax.runkit import training`) is an edge to that submodule.
The implicit import of a submodule's parent package is not an edge (every package re-exporting its
own submodules would otherwise be a cycle).

The same holds one level up, for packages (a package = the first folder under mergemix_jax/, or a
top-level module): no two packages import each other, directly or around a loop, counting every import
as above. The layers, lowest first: config (imports no other package) -> parallel, reliability ->
model, data -> train, merge -> eval -> interop, search, calibrate, diagnostics, export -> runkit (what
every stage shares: run folder, training recipes, Engine, mixtures, utility) -> report (renders a run
folder's files; imports no stage) -> verify -> pipeline -> validate -> api -> cli.

JSON output files have one writer, reliability.atomic.atomic_write_json (atomic, usual permissions):
no module writes `json.dump(...)` to a handle or hands `json.dumps(...)` straight to a text writer
(JSONL logs, appended a line at a time, are another contract).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "mergemix_jax"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def module_files(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package __init__)} of every .py file under `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """{module: {imported package-internal module: line of the first such import}}."""
    modules = module_files(root, package)

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, (path, is_package) in modules.items():
        here = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                if target == package or target.startswith(package + "."):
                    found = owner(target)
                    if found and found != module:
                        graph[module].setdefault(found, node.lineno)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    edges = [f"  {a} -> {b} (line {graph[a][b]})" for a in cycle for b in sorted(graph[a]) if b in cycle]
    return f"import cycle among {', '.join(cycle)}:\n" + "\n".join(edges)


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and any(graph.values())  # the walk found the package and its imports
    cycles = import_cycles(graph)
    assert not cycles, "move the shared piece to the lower module:\n" + "\n".join(describe(c, graph) for c in cycles)


def test_cycle_finder_names_the_modules(tmp_path):
    """The check itself: a cycle through a function-level and a relative import is found and named."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..c import h\n    return h\n")
    (pkg / "c.py").write_text("import pkg.a\n\nh = 1\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.c": 2} and graph["pkg.d"] == {"pkg.a": 1}
    cycles = import_cycles(graph)
    assert cycles == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg.sub.b -> pkg.c (line 2)" in describe(cycles[0], graph)


def package_graph(graph: dict[str, dict[str, int]], package: str = PACKAGE) -> dict[str, dict[str, str]]:
    """{package: {imported package: "module:line" of the first such import}} from the module graph; a
    package is the first name under `package` (mergemix_jax.pipeline.stages -> pipeline); the root
    module itself is left out (it re-exports the public API and nothing imports it)."""

    def name(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    packages: dict[str, dict[str, str]] = {}
    for module, imports in graph.items():
        source = name(module)
        if source is None:
            continue
        packages.setdefault(source, {})
        for target, line in imports.items():
            other = name(target)
            if other is not None and other != source:
                packages[source].setdefault(other, f"{module}:{line}")
    return packages


def test_no_package_cycles():
    """No package-level import cycle (e.g. pipeline -> verify -> pipeline through function-level imports)."""
    packages = package_graph(import_graph())
    assert {"config", "runkit", "pipeline", "verify", "validate", "report"} <= set(packages)
    cycles = import_cycles(packages)
    assert not cycles, "move the shared piece to the lower package (runkit/ for what every stage shares):\n" + "\n".join(
        f"package cycle among {', '.join(c)}: " + "; ".join(f"{a} -> {b} ({packages[a][b]})" for a in c for b in sorted(packages[a]) if b in c) for c in cycles
    )


def test_lowest_and_report_layers_import_no_higher_package():
    """config imports no other package; report renders files and imports no stage (pipeline, verify, validate)."""
    packages = package_graph(import_graph())
    assert packages["config"] == {}, packages["config"]
    assert not {"pipeline", "verify", "validate", "api", "cli"} & set(packages["report"]), packages["report"]
    assert not {"pipeline", "verify", "validate", "report"} & set(packages["runkit"]), packages["runkit"]


def test_package_cycle_finder(tmp_path):
    """The check itself: two packages that import each other only inside a function are a cycle."""
    pkg = tmp_path / "pkg"
    for sub in ("low", "high", "top"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from pkg.top import m\n")
    (pkg / "low" / "a.py").write_text("def f():\n    from pkg.high.b import g\n    return g\n")
    (pkg / "high" / "b.py").write_text("from pkg.low import a\n\ng = 1\n")
    (pkg / "top" / "m.py").write_text("from pkg.high import b\n")
    packages = package_graph(import_graph(pkg, "pkg"), "pkg")
    assert packages == {"low": {"high": "pkg.low.a:2"}, "high": {"low": "pkg.high.b:1"}, "top": {"high": "pkg.top.m:1"}}
    assert import_cycles(packages) == [["high", "low"]]


def _is_json_dumps(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp):  # json.dumps(...) + "\n"
        return _is_json_dumps(node.left)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dumps" and getattr(node.func.value, "id", "") == "json"


def json_writes_outside_the_writer(root: Path = ROOT) -> list[str]:
    """'file:line' of every json.dump(...) call and every text write whose content is json.dumps(...)."""
    writers = {"write_text", "atomic_write_text"}  # appending a JSONL line to an open log (handle.write) is another contract
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "atomic.py" and path.parent.name == "reliability":
            continue  # the writer itself
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute | ast.Name):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            dump = name == "dump" and getattr(getattr(node.func, "value", None), "id", "") == "json"
            if dump or (name in writers and any(_is_json_dumps(a) for a in node.args)):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_json_files_go_through_the_one_writer():
    found = json_writes_outside_the_writer()
    assert not found, f"write JSON files with reliability.atomic.atomic_write_json, not by hand: {found}"


def test_json_write_finder(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import json\n"
        "def f(p, h, x):\n"
        "    p.write_text(json.dumps(x) + '\\n')\n"
        "    json.dump(x, h)\n"
        "    h.write(json.dumps(x) + '\\n')\n"
        "    return json.dumps(x, sort_keys=True)\n"
    )
    assert json_writes_outside_the_writer(pkg) == ["pkg/m.py:3", "pkg/m.py:4"]  # not the JSONL append, not a hash blob


def test_merge_operator_entry_declares_what_its_scores_depend_on():
    """Adding a merge operator is one MERGE_OPERATORS entry (+ its function): the entry's `settings`
    name the eval fields its options read, which eval.results records beside every score."""
    import dataclasses

    from mergemix_jax.config import EvalConfig
    from mergemix_jax.eval.results import SETTING_SOURCES
    from mergemix_jax.merge.operators import MERGE_OPERATORS

    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    declared = {name for op in MERGE_OPERATORS.values() for name in op.settings}
    assert declared <= set(fields) and all(SETTING_SOURCES[name] == f"eval.{name}" for name in declared)
    base = EvalConfig()
    for name, op in MERGE_OPERATORS.items():
        for field in declared:
            changed = dataclasses.replace(base, **{field: getattr(base, field) / 2 + 0.05 if isinstance(getattr(base, field), float) else getattr(base, field) + 1})
            assert (op.options(changed) != op.options(base)) == (field in op.settings), (name, field)
