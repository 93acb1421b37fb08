"""vinr installs three top-level packages, ``models``, ``worker`` and ``service`` (the project's layout), and
refuses to run beside another distribution that installs a package of the same name.

Two distributions that both ship ``models/`` overwrite each other's files in site-packages, and whichever
was installed last decides what ``import models`` finds, for vinr and for the other project alike. pip
does not warn. So every ``vinr`` command first asks the environment which distributions provide these
names (``importlib.metadata.packages_distributions``) and stops, naming the other distribution, instead of
running a mixture. vinr is an application, not a library to import beside others: install it in an
environment of its own (a virtual environment, ``pipx install``, or the Docker image).
"""

from __future__ import annotations

import functools
import importlib.metadata

DISTRIBUTION = "vinr"
TOP_LEVEL = ("models", "worker", "service")
"""The packages this distribution installs at the top of site-packages."""


@functools.cache
def environment_providers() -> dict[str, list[str]]:
    """This environment's top-level packages -> the distributions that install them (read once)."""
    return dict(importlib.metadata.packages_distributions())


class SharedPackageError(RuntimeError):
    """Another installed distribution provides one of vinr's top-level packages."""


def shared_packages(providers: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Each of vinr's top-level packages that other distributions also provide, with their names
    (``providers``: package -> distributions, by default this environment's)."""
    if providers is None:
        providers = environment_providers()
    shared = {}
    for name in TOP_LEVEL:
        others = sorted({d for d in providers.get(name, []) if d.lower().replace("_", "-") != DISTRIBUTION})
        if others:
            shared[name] = others
    return shared


def check_environment(providers: dict[str, list[str]] | None = None) -> None:
    """SharedPackageError when vinr shares a top-level package with another distribution here."""
    shared = shared_packages(providers)
    if shared:
        clashes = "; ".join(f"{name!r} also comes from {', '.join(dists)}" for name, dists in shared.items())
        raise SharedPackageError(
            f"check_environment: {clashes}. Installed together they overwrite each other's files; install vinr "
            "in an environment of its own (python -m venv, pipx install, or the Docker image)"
        )
