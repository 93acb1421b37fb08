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
    """FFmpeg ``scdet``'s rule on thumbnails: with MAFD the mean absolute frame difference in percent,
    ``score = min(MAFD, |MAFD - previous MAFD|)``; a cut when the score passes ``threshold``.

    The second term keeps steady fast motion (high but constant MAFD) from counting as cuts.
    """

    def __init__(self, threshold: float = 10.0):
        self.threshold = threshold
        self.previous: np.ndarray | None = None
        self.previous_mafd = 0.0

    def push(self, image: np.ndarray) -> bool:
        """Feed the next frame; True when there is a cut between the previous frame and this one."""
        thumb = thumbnail(image)
        cut = False
        if self.previous is not None and self.previous.shape == thumb.shape:
            mafd = float(np.abs(thumb - self.previous).mean() * 100.0)
            cut = min(mafd, abs(mafd - self.previous_mafd)) > self.threshold
            self.previous_mafd = mafd
        self.previous = thumb
        return cut
