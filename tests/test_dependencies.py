"""Every third-party import of the installed packages is declared in pyproject.toml.

A runtime import must be a ``[project].dependencies`` entry; an import that only an extra serves must
sit inside ``with needs_extra("EXTRA"):`` (models/extras.py) for an extra that lists it, so a plain
``pip install vinr`` never meets it at import time and gets a clear message when it does.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
ALIASES = {"PIL": "pillow", "skimage": "scikit-image", "skvideo": "scikit-video", "multipart": "python-multipart"}
"""Import names whose distribution ``packages_distributions`` may not know (not installed here)."""


def dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def project_meta() -> tuple[list[str], set[str], dict[str, set[str]]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    packages = [p.rstrip("*").rstrip(".") for p in meta["tool"]["setuptools"]["packages"]["find"]["include"]]
    runtime = {dist_name(r) for r in project["dependencies"]}
    extras = {name: {dist_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    return packages, runtime, extras


def imports_with_extra(tree: ast.AST):
    """(line, top-level module, extra of the enclosing ``needs_extra`` block or None) for each import."""

    def walk(node: ast.AST, extra: str | None):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "needs_extra" and call.args:
                    extra = call.args[0].value
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], extra
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0], extra
        for child in ast.iter_child_nodes(node):
            yield from walk(child, extra)

    yield from walk(tree, None)


def undeclared_imports() -> list[str]:
    packages, runtime, extras = project_meta()
    providers = md.packages_distributions()
    own, stdlib = set(packages), set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module, extra in imports_with_extra(ast.parse(path.read_text(), str(path))):
                if module in stdlib or module in own:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(module, [ALIASES.get(module, module)])}
                if dists & runtime or (extra is not None and dists & extras.get(extra, set())):
                    continue
                where = f"{path.relative_to(ROOT)}:{line}"
                needed = f"inside needs_extra({extra!r}), whose extra lacks it" if extra else "a runtime import"
                problems.append(f"{where}: {module} ({', '.join(sorted(dists))}) is {needed}")
    return problems


def test_every_import_is_declared():
    assert undeclared_imports() == []


def test_a_missing_extra_names_it():
    from models.extras import MissingExtraError, needs_extra

    try:
        with needs_extra("eval"):
            import vinr_no_such_package  # noqa: F401
    except MissingExtraError as exc:
        assert "pip install 'vinr[eval]'" in str(exc) and "vinr_no_such_package" in str(exc)
    else:
        raise AssertionError("needs_extra let a missing package through")


if __name__ == "__main__":  # python tests/test_dependencies.py: the same check as a command, for .ci/run
    found = undeclared_imports()
    print("\n".join(found) or "every third-party import is declared")
    sys.exit(1 if found else 0)
