"""Side-by-side crops of one in-between frame: truth / vinr / lanczos + RIFE / Real-ESRGAN + RIFE.

The held-out carphone clip is degraded as in ``models.videoinr.evaluate`` (bicubic downscale by the
scale, 8-bit, every k-th frame kept). For each (scale, k) the frame shown is the middle in-between
frame of the pair of kept frames that differ most (the hardest motion of the clip, chosen by the
truth alone). Each method rebuilds it from the same two kept frames; the crop is enlarged with
nearest-neighbour pixels so that what each method made stays visible, and each label carries the
crop's Y-PSNR against the truth.

``python -m bench.crops --out docs/crops`` writes ``crops-2x2.png`` and ``crops-4x4.png`` there
(``pip install 'vinr[realesrgan]'``: Real-ESRGAN, RIFE and Pillow).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models import ops, registry
from models.evaluation import carphone_path
from models.extras import needs_extra
from models.videoinr import evaluate, rife
from models.videoinr.realesrgan import RealEsrgan

CELLS = ((2.0, 2), (4.0, 4))
"""(scale, time factor) of each figure."""
BOX = (40, 8, 96, 80)
"""The crop (x, y, width, height) of carphone's 176x144 frame: the face and the window behind it."""
ZOOM = 4
"""Nearest-neighbour enlargement of the crop."""


def hardest_pair(clip: torch.Tensor, k: int) -> int:
    """Index of the first kept frame of the kept pair whose frames differ most."""
    starts = range(0, len(clip) - k, k)
    return max(starts, key=lambda i: float((clip[i + k] - clip[i]).abs().mean()))


@torch.no_grad()
def frames(model, rife_model, esrgan: RealEsrgan, clip: torch.Tensor, scale: float, k: int) -> dict[str, torch.Tensor]:
    """The middle in-between frame of the hardest pair, by each method, at the clip's size."""
    height, width = clip.shape[-2:]
    start = hardest_pair(clip, k)
    kept = clip[start : start + k + 1 : k]
    low = ops.degrade(kept, round(height / scale), round(width / scale))
    middle = k // 2
    up = torch.stack([esrgan.upscale(frame, height, width) for frame in low])
    return {
        "truth": clip[start + middle],
        f"vinr {registry.DEFAULT_MODEL}": evaluate.run_model(model, low, k, height, width)[middle],
        "lanczos + RIFE": evaluate.lanczos_rife(rife_model, low, k, height, width)[middle],
        "Real-ESRGAN + RIFE": evaluate.with_rife(rife_model, up, k)[middle],
    }


def figure(images: dict[str, torch.Tensor], title: str, path: Path) -> None:
    """One row of labelled, enlarged crops as a PNG."""
    with needs_extra("realesrgan"):
        from PIL import Image, ImageDraw

    x, y, w, h = BOX
    label_height, gap = 34, 6
    sheet = Image.new("RGB", (len(images) * (w * ZOOM + gap) - gap, h * ZOOM + label_height + 22), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill="black")
    truth = evaluate.to_uint8(images["truth"][:, y : y + h, x : x + w])
    for column, (name, image) in enumerate(images.items()):
        crop = evaluate.to_uint8(image[:, y : y + h, x : x + w])
        pixels = (crop * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        tile = Image.fromarray(pixels).resize((w * ZOOM, h * ZOOM), Image.NEAREST)
        left = column * (w * ZOOM + gap)
        sheet.paste(tile, (left, 22))
        psnr = ops.psnr(ops.rgb_to_y(crop[None]), ops.rgb_to_y(truth[None]))
        score = "" if name == "truth" else f"  Y-PSNR {psnr:.2f} dB"
        draw.text((left + 4, 22 + h * ZOOM + 8), name + score, fill="black")
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    """Write one figure per cell of ``CELLS``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/crops"))
    parser.add_argument("--model", default=registry.DEFAULT_MODEL)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = registry.load(args.model)
    rife_model = rife.load()
    esrgan = RealEsrgan()
    clip = evaluate.read_frames(carphone_path(), None)
    for scale, k in CELLS:
        images = frames(model, rife_model, esrgan, clip, scale, k)
        path = args.out / f"crops-{scale:g}x{k}.png"
        title = f"carphone (held out), {scale:g}x space, {k}x time: the middle in-between frame, crop enlarged {ZOOM}x"
        figure(images, title, path)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
