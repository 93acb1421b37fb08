"""The ``vinr`` command line: ``upsample``, ``encode``, ``decode``, ``info``, ``serve`` and ``worker``.

Exit codes: 0 done, 1 unexpected failure, 2 bad parameters, 3 unreadable input, 4 no video stream,
5 output not writable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from fractions import Fraction
from pathlib import Path

from worker.errors import InputError, OutputError, VinrError
from worker.media import CODECS, EncodeOptions, VideoReader
from worker.pipeline import UpsampleRequest, run_upsample


class ProgressBar:
    """One status line on stderr: frames, percent, speed and ETA (a line every 10% when not a TTY)."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream = label, stream
        self.started = time.monotonic()
        self.shown_at, self.shown_decile = 0.0, -1
        self.tty = stream.isatty()

    def update(self, done: int, total: int, extra: str = "") -> None:
        now = time.monotonic()
        decile = 10 * done // max(total, 1)
        if self.tty and now - self.shown_at < 0.2 and done < total:
            return
        if not self.tty and decile == self.shown_decile:
            return
        self.shown_at, self.shown_decile = now, decile
        speed = done / max(now - self.started, 1e-9)
        eta = (total - done) / speed if speed > 0 else 0
        unit = "steps" if extra else "frames"
        line = (
            f"{self.label} {done}/{total} {unit} {100 * done / max(total, 1):3.0f}% "
            f"{speed:.2f}/s ETA {int(eta) // 60}:{int(eta) % 60:02d} {extra}"
        ).rstrip()
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


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode a video (NRFF), or a folder of videos or one long video (D-NeRV), into a neural bitstream."""
    from worker.encoding import run_encode

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputError(f"encode: {output} exists; pass --overwrite to replace it")
    bar = None if args.quiet else ProgressBar("encode")

    def report(p: dict) -> None:
        if bar:
            bar.update(p["step"], p["steps"], f"loss {p['loss']:.5f} PSNR {p['psnr']:.2f} dB")

    result = run_encode(
        args.input, output, args.codec, args.bpp, args.minutes, args.steps, args.device, args.segment, report
    )
    if bar:
        bar.finish()
    if not args.quiet:
        print(f"wrote {output}: {result.bytes} bytes, {result.bpp:.4f} bpp, {result.frames} frames")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode a neural bitstream (.nrff, or one video of a .dnerv library) into a video."""
    from worker.decoding import run_decode

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputError(f"decode: {output} exists; pass --overwrite to replace it")
    from service.settings import Settings

    bar = None if args.quiet else ProgressBar("decode")
    limit = None
    if not args.no_output_limits:

        def limit(width: int, height: int, frames: int) -> str | None:
            problem = Settings().output_limit_error(width, height, frames)
            return f"{problem}; pass --no-output-limits to decode it anyway" if problem else None

    result = run_decode(
        args.input,
        output,
        args.frames,
        encode_options(args),
        progress=bar.update if bar else None,
        video=args.video,
        output_limit=limit,
    )
    if bar:
        bar.finish()
    if not args.quiet:
        print(f"wrote {result.output}: {result.width}x{result.height}, {result.frames} frames")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a video or a neural bitstream holds."""
    with open(args.file, "rb") as handle:
        magic = handle.read(4)
    if magic == b"VINR":
        from models.bitstream.container import BitstreamError, parse
        from worker.decoding import read_bitstream

        try:
            stream = parse(read_bitstream(args.file))
        except BitstreamError as exc:
            raise InputError(f"info: {args.file}: {exc}") from exc
        for key, value in dataclasses.asdict(stream.header).items():
            print(f"{key}: {value}")
        for tag, payload in stream.sections.items():
            print(f"section {tag}: {len(payload)} bytes")
        if stream.header.codec == "dnerv":
            from models.dnerv.decode import read_config

            try:
                videos = read_config(stream.sections.get("CONF", b""), stream.header)["videos"]
            except BitstreamError as exc:
                raise InputError(f"info: {args.file}: {exc}") from exc
            for index, video in enumerate(videos):
                print(f"video {index}: {video['name']} ({video['frames']} frames, {Fraction(*video['fps'])} fps)")
        return 0
    with VideoReader(args.file) as reader:
        for key, value in dataclasses.asdict(reader.info).items():
            print(f"{key}: {value}")
    return 0


LOOPBACK = {"127.0.0.1", "localhost", "::1"}
"""Hosts that only this machine reaches."""


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP gateway (with an in-process worker unless VINR_REDIS_URL is set)."""
    import os

    import uvicorn

    from service.main import create_app
    from service.settings import Settings

    settings = Settings()
    if args.host not in LOOPBACK and not settings.api_keys:
        logging.warning(
            "serve: listening on %s without VINR_API_KEYS: anyone who reaches this port can run jobs", args.host
        )
    os.umask(0o077)  # job files are the uploader's: readable by this service's user only
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker for the queue in VINR_REDIS_URL (one per GPU)."""
    import os

    from service.settings import Settings
    from worker.process import run_worker

    if args.device:
        os.environ["VINR_DEVICE"] = args.device
    os.umask(0o077)  # results are readable by this service's user only
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

    enc = sub.add_parser("encode", help=cmd_encode.__doc__, description=cmd_encode.__doc__)
    enc.add_argument("input", help="a video; for dnerv also a folder of same-size videos")
    enc.add_argument("-o", "--output", required=True, help="output bitstream (.nrff or .dnerv)")
    enc.add_argument("--codec", default="nrff", choices=["nrff", "dnerv"], help="neural codec")
    enc.add_argument("--segment", type=int, default=32, help="dnerv: frames per video when cutting one long video")
    enc.add_argument("--bpp", type=float, default=0.1, help="target bits per pixel of the whole video")
    enc.add_argument("--minutes", type=float, default=2.0, help="fitting time budget")
    enc.add_argument("--steps", type=int, default=3000, help="most fitting steps")
    enc.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    enc.add_argument("--overwrite", action="store_true")
    enc.add_argument("--quiet", action="store_true")
    enc.set_defaults(run=cmd_encode)

    dec = sub.add_parser("decode", help=cmd_decode.__doc__, description=cmd_decode.__doc__)
    dec.add_argument("input")
    dec.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov, .webm)")
    dec.add_argument("--frames", help="frame range START:STOP (half-open), e.g. 10:20")
    dec.add_argument("--video", help="dnerv: which video of the library (name or index; default the first)")
    dec.add_argument(
        "--no-output-limits",
        action="store_true",
        help="decode outputs larger than VINR_MAX_OUTPUT_PIXELS/FRAMES/WORK (the container's own limits still apply)",
    )
    dec.add_argument("--overwrite", action="store_true")
    dec.add_argument("--quiet", action="store_true")
    add_encode_options(dec)
    dec.set_defaults(run=cmd_decode)

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
