"""Package edges: models below worker below service, and no import cycles (function-level imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("models", "worker", "service")
"""Bottom to top: a package may import only packages at or below its own layer."""


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_package_imports_a_layer_above_it():
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    wrong = [
        f"{a} imports {b}"
        for a, targets in import_graph().items()
        for b in targets
        if rank[b.split(".")[0]] > rank[a.split(".")[0]]
    ]
    assert not wrong, wrong


def test_no_import_cycles():
    graph = import_graph()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_vinr_refuses_an_environment_where_another_distribution_installs_models():
    from models.install import SharedPackageError, check_environment, shared_packages

    assert shared_packages() == {}  # this environment: vinr alone provides models, worker and service
    mixed = {"models": ["vinr", "someone-elses-models"], "worker": ["vinr"], "service": ["vinr"], "numpy": ["numpy"]}
    assert shared_packages(mixed) == {"models": ["someone-elses-models"]}
    with pytest.raises(SharedPackageError, match="'models' also comes from someone-elses-models"):
        check_environment(mixed)
