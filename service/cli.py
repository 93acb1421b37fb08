"""The ``vinr`` command line: ``upsample``, ``info``, ``serve`` (HTTP gateway) and ``worker`` (RQ).

Exit codes: 0 done, 1 unexpected failure, 2 bad parameters, 3 unreadable input, 4 no video stream,
5 output not writable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from worker.errors import OutputError, VinrError
from worker.media import CODECS, EncodeOptions, VideoReader
from worker.pipeline import UpsampleRequest, run_upsample


class ProgressBar:
    """One status line on stderr: frames, percent, speed and ETA (a line every 10% when not a TTY)."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream = label, stream
        self.started = time.monotonic()
        self.shown_at, self.shown_decile = 0.0, -1
        self.tty = stream.isatty()

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        decile = 10 * done // max(total, 1)
        if self.tty and now - self.shown_at < 0.2 and done < total:
            return
        if not self.tty and decile == self.shown_decile:
            return
        self.shown_at, self.shown_decile = now, decile
        speed = done / max(now - self.started, 1e-9)
        eta = (total - done) / speed if speed > 0 else 0
        line = (
            f"{self.label} {done}/{total} frames {100 * done / max(total, 1):3.0f}% "
            f"{speed:.2f} fps ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")


def add_encode_options(parser: argparse.ArgumentParser) -> None:
    """The output encoding flags shared by every command that writes a video."""
    group = parser.add_argument_group("output encoding")
    group.add_argument(
        "--codec", default="h264", choices=sorted(CODECS), help="video codec (ffv1: lossless RGB, use .mkv)"
    )
    group.add_argument("--crf", type=int, default=None, help="quality (lower is better); codec default if unset")
    group.add_argument("--preset", default=None, help="encoder speed preset (x264/x265: medium, ...; AV1: 0-13)")
    group.add_argument("--pix-fmt", default=None, help="pixel format, e.g. yuv420p, yuv420p10le, yuv444p, gbrp")
    group.add_argument("--fragmented", action="store_true", help="fragmented MP4 (playable while written)")


def encode_options(args: argparse.Namespace) -> EncodeOptions:
    return EncodeOptions(
        codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, fragmented=args.fragmented
    )


def cmd_upsample(args: argparse.Namespace) -> int:
    """Space-time upsample a video."""
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputError(f"upsample: {output} exists; pass --overwrite to replace it")
    request = UpsampleRequest(
        scale=args.scale,
        width=args.width,
        height=args.height,
        fps=args.fps,
        time_factor=args.time_factor,
        model=args.model,
        device=args.device,
        half=args.half,
        tile=args.tile,
        encode=encode_options(args),
    )
    bar = None if args.quiet else ProgressBar("upsample")
    result = run_upsample(args.input, output, request, progress=bar.update if bar else None)
    if bar:
        bar.finish()
    if not args.quiet:
        plan = result.plan
        print(
            f"wrote {result.output}: {plan.width}x{plan.height} at {float(plan.fps):g} fps, {result.frames} frames "
            f"in {result.seconds:.1f} s"
        )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a video file holds."""
    with VideoReader(args.file) as reader:
        for key, value in dataclasses.asdict(reader.info).items():
            print(f"{key}: {value}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP gateway (with an in-process worker unless VINR_REDIS_URL is set)."""
    import uvicorn

    from service.main import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker for the queue in VINR_REDIS_URL (one per GPU)."""
    import os

    from service.settings import Settings
    from worker.process import run_worker

    if args.device:
        os.environ["VINR_DEVICE"] = args.device
    run_worker(Settings(), args.queues, burst=args.burst)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vinr", description="Neural video upsampling and decoding.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upsample", help=cmd_upsample.__doc__, description=cmd_upsample.__doc__)
    up.add_argument("input")
    up.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov, .webm)")
    space = up.add_argument_group("space (one of)")
    space.add_argument("--scale", type=float, help="spatial factor, any real number in [1, 8], e.g. 3.5")
    space.add_argument("--width", type=int, help="output width (height follows the aspect ratio if not given)")
    space.add_argument("--height", type=int, help="output height")
    timing = up.add_argument_group("time (one of)")
    timing.add_argument("--fps", type=float, help="output frame rate, e.g. 120")
    timing.add_argument("--time-factor", type=float, help="output rate as a multiple of the input's")
    up.add_argument("--model", default="videoinr-s", help="served checkpoint name or .safetensors path")
    up.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    up.add_argument("--half", action="store_true", help="float16 inference (CUDA)")
    up.add_argument("--tile", type=int, default=256, help="low-res tile side in pixels (0: no tiling)")
    up.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    up.add_argument("--quiet", action="store_true", help="no progress bar")
    add_encode_options(up)
    up.set_defaults(run=cmd_upsample)

    serve = sub.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=cmd_serve)

    work = sub.add_parser("worker", help=cmd_worker.__doc__, description=cmd_worker.__doc__)
    work.add_argument("--device", help="auto, cpu or cuda:N (default: VINR_DEVICE or auto)")
    work.add_argument("--queues", nargs="+", help="queues to listen on (default: VINR_QUEUE)")
    work.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    work.set_defaults(run=cmd_worker)

    info = sub.add_parser("info", help=cmd_info.__doc__, description=cmd_info.__doc__)
    info.add_argument("file")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vinr`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vinr: %(message)s")
    try:
        return args.run(args)
    except VinrError as exc:
        print(f"vinr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vinr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
