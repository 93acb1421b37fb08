"""Scene-cut detection between consecutive frames, so nothing is warped or blended across a cut."""

from __future__ import annotations

import numpy as np

THUMBNAIL_WIDTH = 64
"""Frames are compared as luma thumbnails about this wide (pixels): cheap, and robust to noise."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """Box-filtered luma thumbnail of an RGB frame ``(H, W, 3)`` in [0, 1]."""
    luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    step = max(1, image.shape[1] // THUMBNAIL_WIDTH)
    h, w = luma.shape[0] // step * step, luma.shape[1] // step * step
    return luma[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


class SceneCutDetector:
    """A cut is a jump in MAFD (mean absolute frame difference of luma thumbnails, in percent).

    A cut when ``MAFD >= min_change`` and ``MAFD >= ratio *`` the mean MAFD of the last few frame
    pairs that were not cuts. Like FFmpeg ``scdet`` (``min(MAFD, |MAFD - previous|)``) it ignores steady fast motion,
    whose MAFD is high but constant; the ratio also catches low-contrast cuts that a fixed
    threshold misses.
    """

    def __init__(self, min_change: float = 5.0, ratio: float = 2.5, history: int = 4):
        self.min_change, self.ratio, self.history = min_change, ratio, history
        self.previous: np.ndarray | None = None
        self.recent: list[float] = []

    def push(self, image: np.ndarray) -> bool:
        """Feed the next frame; True when there is a cut between the previous frame and this one."""
        thumb = thumbnail(image)
        cut = False
        if self.previous is not None and self.previous.shape == thumb.shape:
            mafd = float(np.abs(thumb - self.previous).mean() * 100.0)
            # with no history yet (the first pair), only a change ratio times min_change counts
            baseline = np.mean(self.recent) if self.recent else self.min_change
            cut = mafd >= self.min_change and mafd >= self.ratio * baseline
            if not cut:
                self.recent = (self.recent + [mafd])[-self.history :]
        self.previous = thumb
        return cut
