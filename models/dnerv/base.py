"""Shipped D-NeRV base decoders: where they live, and loading one that a library names by its hash.

A library that references a base stores only the difference of its fine-tuned weights from the base
(``models/bitstream/quant.py`` ``pack_delta``); the base is trained once by ``models/dnerv/train.py``
and shipped with vinr, so decoding still needs nothing but vinr and the file.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from models import registry
from models.bitstream.container import BitstreamError

BASE_DIR = registry.CHECKPOINT_DIR / "codecs"
"""Shipped codec base models (kept apart from the upsampling models that ``registry.served`` lists)."""
DEFAULT_BASE = "dnerv-s-v2"
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")


def base_path(name: str) -> Path:
    """The weights of base ``name``; BitstreamError if the name is malformed or not shipped here."""
    if not isinstance(name, str) or not NAME.match(name):
        raise BitstreamError(f"base_path: {name!r} is not a base decoder name")
    path = BASE_DIR / f"{name}.safetensors"
    if not path.is_file():
        shipped = sorted(p.stem for p in BASE_DIR.glob("*.safetensors"))
        raise BitstreamError(f"base_path: this vinr ships no base decoder {name!r} (it has {shipped})")
    return path


@lru_cache(maxsize=8)
def file_hash(path: Path) -> str:
    """SHA-256 of a file, hex (cached: the shipped files do not change while vinr runs)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_base(name: str, sha256: str | None) -> Path:
    """The weights of base ``name``; BitstreamError unless shipped here with SHA-256 ``sha256`` (if given)."""
    path = base_path(name)
    if sha256 is not None and file_hash(path) != sha256:
        raise BitstreamError(f"check_base: the library was made with another {name!r} (its SHA-256 differs)")
    return path


def load_base(name: str, sha256: str | None = None):
    """Base ``name`` as a DNeRV on the CPU; BitstreamError if its hash is not ``sha256``."""
    return registry.load(check_base(name, sha256))
