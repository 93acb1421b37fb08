"""Export a VideoINR checkpoint as three ONNX graphs, the stages ``Upsampler`` runs.

- ``encoder.onnx``: ``image (1, 3, h, w)`` -> ``features (1, C, h, w)``, once per input frame;
- ``pair.onnx``: two images and their features -> what every query of the pair reads (flows,
  frame colours, the first layers' per-pixel projections), once per input pair;
- ``query.onnx``: those maps, output points ``(1, N, 2)``, times ``(1, T)`` and the cell -> RGB
  ``(1, 3, T, N)``: the MLPs and the warps (GridSample, opset 16+).

Spatial sizes, point counts and time counts are dynamic. Each graph is checked with
``onnx.checker`` and its SHA-256 recorded in ``manifest.json`` beside it, with the checkpoint's.

``python -m models.videoinr.export --model videoinr-s [--opset 17] [--half] [--out DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path
from typing import cast

import torch
from torch import nn

from models import registry
from models.extras import needs_extra
from models.videoinr.network import PairState, VideoINR

STAGES = ("encoder", "pair", "query")
"""The graphs an export writes, in the order they run."""
PAIR_OUTPUTS = ("flows", "warp_images", "spatial_rows", "decoder_maps")
"""The pair stage's outputs: the parts of ``PairState`` that ``query_times`` reads."""
DEFAULT_OPSET = 17
"""GridSample (bilinear and bicubic) needs opset 16; 17 is what current runtimes all take."""
FORMAT = 2
"""Version of the export layout (graph names, inputs, outputs); part of every cache key."""


class EncoderStage(nn.Module):
    def __init__(self, model: VideoINR):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frame(image)


class PairStage(nn.Module):
    def __init__(self, model: VideoINR):
        super().__init__()
        self.model = model

    def forward(self, image0, image1, feat0, feat1):
        state = self.model.encode_pair(image0, image1, feat0, feat1)
        return tuple(getattr(state, name) for name in PAIR_OUTPUTS)


class QueryStage(nn.Module):
    def __init__(self, model: VideoINR):
        super().__init__()
        self.model = model

    def forward(self, flows, warp_images, spatial_rows, decoder_maps, points, times, cell):
        images = warp_images.view(1, 6, *warp_images.shape[-2:])  # only its size is read
        state = PairState(images, images, flows, warp_images, spatial_rows, decoder_maps)
        return self.model.query_times(state, points, times, cell)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def example_inputs(model: VideoINR, dtype: torch.dtype, h: int = 24, w: int = 40, n: int = 300, t: int = 2):
    """Small inputs for tracing each stage (sizes are dynamic in the graphs)."""
    image = torch.rand(1, 3, h, w, dtype=dtype)
    with torch.no_grad():
        feat = model.encode_frame(image)
        state = model.encode_pair(image, image, feat, feat)
    points = torch.rand(1, n, 2, dtype=dtype) * torch.tensor([w, h], dtype=dtype)
    times = torch.linspace(0, 1, t, dtype=dtype).view(1, t)
    cell = torch.full((1, 2), 0.5, dtype=dtype)
    pair = tuple(getattr(state, name) for name in PAIR_OUTPUTS)
    return {"encoder": (image,), "pair": (image, image, feat, feat), "query": (*pair, points, times, cell)}


def export(name_or_path: str | Path, out: Path, opset: int = DEFAULT_OPSET, half: bool = False) -> dict[str, object]:
    """Write ``encoder.onnx``, ``pair.onnx``, ``query.onnx`` and ``manifest.json`` into ``out``."""
    with needs_extra("onnx"):
        import onnx
    weights = registry.resolve(name_or_path)
    dtype = torch.float16 if half else torch.float32
    model = cast(VideoINR, registry.load(weights, dtype=dtype))
    out.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model, dtype)
    spatial = {2: "height", 3: "width"}
    names = {
        "encoder": (["image"], ["features"], {"image": spatial, "features": spatial}),
        "pair": (
            ["image0", "image1", "feat0", "feat1"],
            list(PAIR_OUTPUTS),
            {
                **{key: spatial for key in ("image0", "image1", "feat0", "feat1", "flows", "warp_images")},
                "decoder_maps": spatial,
                "spatial_rows": {1: "pixels"},
            },
        ),
        "query": (
            [*PAIR_OUTPUTS, "points", "times", "cell"],
            ["rgb"],
            {
                **{key: spatial for key in ("flows", "warp_images", "decoder_maps")},
                "spatial_rows": {1: "pixels"},
                "points": {1: "points"},
                "times": {1: "times"},
                "rgb": {2: "times", 3: "points"},
            },
        ),
    }
    modules = {"encoder": EncoderStage(model), "pair": PairStage(model), "query": QueryStage(model)}
    files = {}
    for stage in STAGES:
        path = out / f"{stage}.onnx"
        input_names, output_names, axes = names[stage]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                modules[stage],
                inputs[stage],
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        onnx.checker.check_model(str(path), full_check=True)
        files[stage] = {"file": path.name, "sha256": sha256(path)}
    manifest = {
        "format": FORMAT,
        "checkpoint": weights.stem,
        "checkpoint_sha256": sha256(weights),
        "spec": model.spec,
        "opset": opset,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "graphs": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m models.videoinr.export``: export a checkpoint's three ONNX graphs."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", default=registry.DEFAULT_MODEL, help="checkpoint name or path")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--half", action="store_true", help="float16 graphs (for GPU execution providers)")
    parser.add_argument("--out", type=Path, help="folder (default: exports/MODEL)")
    args = parser.parse_args(argv)
    if args.opset < 16:
        parser.error("--opset must be 16 or more (GridSample)")
    out = args.out or Path("exports") / Path(args.model).stem
    manifest = export(args.model, out, args.opset, args.half)
    graphs: dict[str, dict[str, str]] = manifest["graphs"]  # type: ignore[assignment]
    for stage, entry in graphs.items():
        print(f"{out / entry['file']}: {stage}, sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
