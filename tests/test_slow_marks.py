"""The fast tier stays fast: a test that runs a pipeline, a validation or a killed job (directly or
through a fixture) carries `pytest.mark.slow`, so `pytest -m "not slow"` skips it. Read from the
test files' syntax trees; a call inside `with pytest.raises(...)` is a refusal, cheap, and allowed."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HEAVY = {"run_pipeline", "finished_tiny_run", "run_validation", "run_and_kill", "run_to_end"}


def _is_slow_mark(node: ast.expr) -> bool:
    return "mark.slow" in ast.unparse(node)


def _module_is_slow(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets) and _is_slow_mark(node.value)
        for node in tree.body
    )


def _heavy_calls(fn: ast.FunctionDef) -> set[str]:
    """Names of heavy functions called in `fn`, outside `with pytest.raises(...)` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.With) and any("pytest.raises" in ast.unparse(item.context_expr) for item in node.items):
            return
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in HEAVY:
                found.add(name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in fn.body:
        visit(statement)
    return found


def unmarked_heavy_tests(source: str) -> list[str]:
    """Tests in `source` that run something heavy (or use a fixture that does) without the slow mark."""
    tree = ast.parse(source)
    if _module_is_slow(tree):
        return []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    is_fixture = lambda f: any("fixture" in ast.unparse(d) for d in f.decorator_list)  # noqa: E731
    fixtures = [f for f in functions if is_fixture(f)]
    heavy_fixtures = {f.name for f in fixtures if _heavy_calls(f)}
    while grown := {f.name for f in fixtures if {a.arg for a in f.args.args} & heavy_fixtures} - heavy_fixtures:
        heavy_fixtures |= grown  # a fixture built on a heavy fixture is heavy
    offenders = []
    for f in functions:
        if not f.name.startswith("test_") or any(_is_slow_mark(d) for d in f.decorator_list):
            continue
        uses = {a.arg for a in f.args.args} & heavy_fixtures
        if _heavy_calls(f) or uses:
            offenders.append(f"{f.name} ({', '.join(sorted(_heavy_calls(f) | uses))})")
    return offenders


def test_every_heavy_test_is_marked_slow():
    offenders = {p.name: bad for p in sorted(TESTS.glob("test_*.py")) if (bad := unmarked_heavy_tests(p.read_text()))}
    assert not offenders, f"mark these @pytest.mark.slow (or the module: pytestmark = pytest.mark.slow): {offenders}"


def test_the_check_sees_direct_calls_fixtures_and_module_marks():
    direct = "def test_a(tmp_path):\n    run_pipeline(c, p)\n"
    assert unmarked_heavy_tests(direct) == ["test_a (run_pipeline)"]
    assert unmarked_heavy_tests("@pytest.mark.slow\n" + direct) == []
    assert unmarked_heavy_tests("pytestmark = pytest.mark.slow\n" + direct) == []
    refused = "def test_b(tmp_path):\n    with pytest.raises(ValueError):\n        run_pipeline(c, p)\n"
    assert unmarked_heavy_tests(refused) == []
    fixture = "@pytest.fixture\ndef run():\n    return finished_tiny_run()\n\n@pytest.fixture\ndef engine(run):\n    return run\n\n"
    assert unmarked_heavy_tests(fixture + "def test_c(engine):\n    assert engine\n") == ["test_c (engine)"]
