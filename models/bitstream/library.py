"""A D-NeRV library's index of videos: finding one by name or number (below the probe and the decoder)."""

from __future__ import annotations


class UnknownVideoError(LookupError):
    """A D-NeRV library has no video of the requested name or index."""


def choose_video(videos: list[dict], video: str | None) -> int:
    """A video's index from its name or number (the first when None); UnknownVideoError if none."""
    names = [v["name"] for v in videos]
    if video is None:
        return 0
    if video in names:
        return names.index(video)
    if video.isdigit() and int(video) < len(names):
        return int(video)
    raise UnknownVideoError(f"no video {video!r} in the library; it holds {names}")
