"""Optional dependencies: imports that only training or evaluation needs, with an error naming the extra.

Every import of a package that ``pyproject.toml`` lists only in an extra sits inside
``with needs_extra("NAME"):``; ``tests/test_dependencies.py`` checks that rule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class MissingExtraError(ImportError):
    """An optional dependency is not installed."""


@contextlib.contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Turn a missing optional package into an error that says which extra installs it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"needs_extra: the package {exc.name!r} is not installed; install it with pip install 'vinr[{extra}]'"
        ) from exc
