"""The ``vinr`` command line: ``upsample``, ``encode``, ``decode``, ``info``, ``serve`` and ``worker``.

Exit codes: 0 done, 1 unexpected failure, 2 bad parameters, 3 unreadable input, 4 no video stream,
5 output not writable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import os
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path

from models import codecs
from models.install import SharedPackageError, check_environment
from models.registry import DEFAULT_MODEL
from models.videoinr.upsampler import Upsampler
from worker.adapting import MAX_ADAPT_SECONDS, prepared_upsampler
from worker.adapting import describe as describe_adaptation
from worker.errors import InputError, OutputError, ParameterError, VinrError
from worker.jobs import eta_seconds
from worker.media import ENCODER_KINDS, OUTPUT_CODECS, OutputOptions, VideoReader
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import MAX_SLOWMO, SLOWMO_AUDIO, UpsampleRequest
from worker.preview import COMPARISONS, png_bytes, render_preview
from worker.runtime import BACKENDS, ModelCache
from worker.segments import run_segmented


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
        eta = eta_seconds(done, total, speed) or 0
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


def new_output(args: argparse.Namespace, command: str) -> Path:
    """``args.output`` as a Path; OutputError when it exists and ``--overwrite`` was not given."""
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputError(f"{command}: {output} exists; pass --overwrite to replace it")
    if getattr(args, "codec", None) == "ffv1" and output.suffix.lower() != ".mkv":
        raise ParameterError(f"{command}: --codec ffv1 (lossless RGB) is written to .mkv files; name the output .mkv")
    return output


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """The output encoding flags shared by every command that writes a video."""
    group = parser.add_argument_group("output encoding")
    group.add_argument(
        "--codec", default="h264", choices=sorted(OUTPUT_CODECS), help="video codec (ffv1: lossless RGB, use .mkv)"
    )
    group.add_argument("--crf", type=int, default=None, help="quality (lower is better); codec default if unset")
    group.add_argument("--preset", default=None, help="encoder speed preset (x264/x265: medium, ...; AV1: 0-13)")
    group.add_argument("--pix-fmt", default=None, help="pixel format, e.g. yuv420p, yuv420p10le, yuv444p, gbrp")
    group.add_argument("--fragmented", action="store_true", help="fragmented MP4 (playable while written)")
    group.add_argument(
        "--encoder",
        default="auto",
        choices=ENCODER_KINDS,
        help="auto: NVENC when frames are made on CUDA and it opens, else the CPU encoder (the log says which "
        "and why); cpu; nvenc (exit 2 where it cannot open)",
    )


def output_options(args: argparse.Namespace) -> OutputOptions:
    return OutputOptions(
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        pix_fmt=args.pix_fmt,
        fragmented=args.fragmented,
        encoder_kind=args.encoder,
    )


def cmd_upsample(args: argparse.Namespace) -> int:
    """Space-time upsample a video."""
    output = new_output(args, "upsample")
    request = UpsampleRequest(
        scale=args.scale,
        width=args.width,
        height=args.height,
        fps=args.fps,
        time_factor=args.time_factor,
        slowmo=args.slowmo,
        slowmo_audio=args.slowmo_audio,
        adapt=args.adapt,
        model=args.model,
        device=args.device,
        half=args.half,
        bf16=args.bf16,
        tile=args.tile,
        backend=args.backend,
        output=output_options(args),
    )
    if args.preview is not None:
        if args.adapt:
            raise ParameterError("upsample: --adapt is for the video; a --preview renders with the served model")
        return write_preview(args, request, output)
    upsampler = upsampler_for(args, request)
    if args.segments or args.resume:
        return upsample_in_segments(args, request, output, upsampler)
    bar = None if args.quiet else ProgressBar("upsample")
    result = run_upsample(args.input, output, request, progress=bar.update if bar else None, upsampler=upsampler)
    if bar:
        bar.finish()
    if not args.quiet:
        plan = result.plan
        print(
            f"wrote {result.output}: {plan.width}x{plan.height} at {float(plan.fps):g} fps, {result.frames} frames "
            f"in {result.seconds:.1f} s"
        )
    return 0


def upsampler_for(args: argparse.Namespace, request: UpsampleRequest) -> Upsampler:
    """The served model, or with ``--adapt SECONDS`` the model adapted to the input first (its progress
    and its held-out gain printed)."""
    if not request.adapt:
        return load_upsampler(request)
    if not 0 < request.adapt <= MAX_ADAPT_SECONDS:
        raise ParameterError(f"upsample: --adapt takes 0 to {MAX_ADAPT_SECONDS:g} seconds, got {request.adapt:g}")
    tty = sys.stderr.isatty()

    def progress(done: float, steps: int) -> None:
        if not args.quiet and tty:
            sys.stderr.write(f"\radapt {done * 100:3.0f}% {steps} steps")
            sys.stderr.flush()

    upsampler, summary = prepared_upsampler(Path(args.input), request, ModelCache(), progress=progress)
    if not args.quiet:
        if tty:
            sys.stderr.write("\n")
        print(describe_adaptation(summary or {}))
    return upsampler


def upsample_in_segments(args: argparse.Namespace, request: UpsampleRequest, output: Path, upsampler: Upsampler) -> int:
    """``--segments N``: the segments one after another, kept in a work folder beside OUT until the end,
    so ``--resume`` after an interruption makes only the missing ones."""
    if not args.segments or args.segments < 1:
        raise ParameterError("upsample: --resume goes with --segments N (N >= 1)")
    work = output.with_name(f".{output.name}.segments")
    if work.exists() and not args.resume:
        raise OutputError(f"upsample: {work} holds an earlier run's segments; pass --resume to go on, or remove it")
    partial = output.with_name(f".{output.name}.partial{output.suffix}")
    bar = None if args.quiet else ProgressBar("upsample")
    started = time.perf_counter()
    try:
        plan, segments, frames = run_segmented(
            Path(args.input),
            partial,
            request,
            work,
            upsampler,
            count=args.segments,
            resume=args.resume,
            progress=bar.update if bar else None,
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)
    shutil.rmtree(work, ignore_errors=True)
    if bar:
        bar.finish()
    if not args.quiet:
        print(
            f"wrote {output}: {plan.width}x{plan.height} at {float(plan.fps):g} fps, {frames} frames "
            f"in {len(segments.segments)} segments, {time.perf_counter() - started:.1f} s"
        )
    return 0


def write_preview(args: argparse.Namespace, request: UpsampleRequest, output: Path) -> int:
    """``--preview SECONDS``: the output frame nearest that time as a PNG (and ``--compare``'s beside it)."""
    if output.suffix.lower() != ".png":
        raise ParameterError(f"upsample --preview writes a PNG; give -o NAME.png, not {output.name}")
    shot = render_preview(args.input, request, args.preview)
    files = {output: shot.image}
    if args.compare:
        files[output.with_name(f"{output.stem}.{args.compare}.png")] = shot.bicubic()
    for path, image in files.items():
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(png_bytes(image))
        partial.replace(path)
    if not args.quiet:
        plan = shot.plan
        print(
            f"wrote {', '.join(map(str, files))}: output frame {shot.index + 1} of {plan.frames} "
            f"({plan.width}x{plan.height}) at {shot.time:.3f} s"
        )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode a video (NRFF), or a folder of videos or one long video (D-NeRV), into a neural bitstream."""
    from worker.encoding import run_encode

    output = new_output(args, "encode")
    bar = None if args.quiet else ProgressBar("encode")

    def report(p: dict) -> None:
        if bar:
            stage = f"{p['stage']}: " if "stage" in p else ""
            bar.update(p["step"], p["steps"], f"{stage}loss {p['loss']:.5f} PSNR {p['psnr']:.2f} dB")

    result = run_encode(
        args.input,
        output,
        codec=args.codec,
        bpp=args.bpp,
        minutes=args.minutes,
        steps=args.steps,
        device=args.device,
        segment=args.segment,
        progress=report,
        weight_bits=args.weight_bits,
        residual_share=args.residual_share,
    )
    if bar:
        bar.finish()
    if not args.quiet:
        print(f"wrote {output}: {result.bytes} bytes, {result.bpp:.4f} bpp, {result.frames} frames")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode a neural bitstream (.nrff, or one video of a .dnerv library) into a video."""
    from worker.decoding import run_decode

    output = new_output(args, "decode")
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
        output_options(args),
        progress=bar.update if bar else None,
        video=args.video,
        output_limit=limit,
    )
    if bar:
        bar.finish()
    if not args.quiet:
        print(f"wrote {result.output}: {result.width}x{result.height}, {result.frames} frames")
    return 0


def model_info(name: str) -> int:
    """``vinr info --model NAME``: the checkpoint, its training, and where it can run."""
    import torch

    from models import registry
    from models.extras import needs_extra
    from worker.runtime import AUTO_BACKEND, cache_dir, onnx_available

    try:
        card = registry.read_card(name)
    except registry.CheckpointError as exc:
        raise ParameterError(str(exc)) from exc
    print(f"model: {card['name']} ({registry.resolve(name)})")
    print(f"spec: {card['spec']}")
    for key in ("steps", "wall_time_s", "device", "code_version"):
        if key in card:
            print(f"{key}: {card[key]}")
    for key, value in card.get("metrics", {}).items():
        print(f"metric {key}: {value}")
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    print(f"devices: {', '.join(devices)}")
    print(f"backend torch: torch {torch.__version__}")
    if onnx_available():
        with needs_extra("onnx"):
            import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        print(f"backend onnx: onnxruntime {onnxruntime.__version__}, providers {providers}")
    else:
        print("backend onnx: not installed (pip install 'vinr[onnx]')")
    auto = {
        kind: backend if backend == "torch" or onnx_available() else "torch" for kind, backend in AUTO_BACKEND.items()
    }
    print("backend auto: " + ", ".join(f"{kind} -> {backend}" for kind, backend in auto.items()))
    print(f"export cache: {cache_dir() / 'onnx'}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a video or a neural bitstream holds, or (--model) a checkpoint and its backends."""
    if args.model:
        return model_info(args.model)
    if not args.file:
        raise ParameterError("info: give a FILE or --model NAME")
    from models.bitstream.container import MAGIC

    with open(args.file, "rb") as handle:
        magic = handle.read(len(MAGIC))
    if magic == MAGIC:
        from models.bitstream.container import BitstreamError, parse
        from worker.decoding import read_bitstream

        try:
            stream = parse(read_bitstream(args.file))
        except BitstreamError as exc:
            raise InputError(f"info: {args.file}: {exc}") from exc
        for key, value in dataclasses.asdict(stream.header).items():
            print(f"{key}: {shown(key, value)}")
        for tag, payload in stream.sections.items():
            print(f"section {tag}: {len(payload)} bytes")

        try:
            for line in codecs.get(stream.header.codec).describe(stream):
                print(line)
        except (BitstreamError, ValueError) as exc:
            raise InputError(f"info: {args.file}: {exc}") from exc
        return 0
    with VideoReader(args.file) as reader:
        info = dataclasses.asdict(reader.info)
    if info["frames"] is None:  # the container does not say (a fragmented MP4): count the packets, decoding none
        info["frames"] = count_video_packets(args.file)
    for key, value in info.items():
        print(f"{key}: {shown(key, value)}")
    return 0


def shown(key: str, value: object) -> str:
    """A field of ``vinr info`` as a person reads it: rates as decimals, colour codes by name, lists joined."""
    from models.bitstream.container import MATRICES, RANGES

    if isinstance(value, Fraction):
        return f"{float(value):.6g}" + (f" ({value})" if value.denominator != 1 else "")
    if key == "matrix" and isinstance(value, int):
        return f"{MATRICES.get(value, 'unknown')} ({value})"
    if key == "color_range" and isinstance(value, int):
        return f"{RANGES.get(value, 'unknown')} ({value})"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def count_video_packets(path: str) -> int:
    """The video stream's packets (one per frame), read without decoding."""
    import av

    with av.open(path) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}
"""Hosts that only this machine reaches."""


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP gateway (with an in-process worker unless VINR_REDIS_URL is set)."""
    import os

    import uvicorn

    from service.main import create_app
    from service.settings import Settings

    settings = Settings()
    reached_on = settings.published_host or args.host
    if reached_on not in LOOPBACK and not settings.api_keys:
        published = f" (published on {reached_on})" if settings.published_host else ""
        logging.warning(
            "serve: listening on %s%s without VINR_API_KEYS: anyone who reaches this port can run jobs",
            args.host,
            published,
        )
    os.umask(0o077)  # job files are the uploader's: readable by this service's user only
    shown = f"[{args.host}]" if ":" in args.host else args.host
    mode = "jobs queued on Redis for vinr worker processes" if settings.redis_url else "jobs run in this process"
    print(f"vinr serve: http://{shown}:{args.port}/ (the page; /docs for the API), {mode}", flush=True)
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker for the queue in VINR_REDIS_URL (one per GPU)."""
    import os

    from service.settings import Settings
    from worker.process import run_worker

    settings = Settings(**({"device": args.device} if args.device else {}))
    os.umask(0o077)  # results are readable by this service's user only
    run_worker(settings, args.queues, burst=args.burst)
    return 0


def add_upsample_command(sub) -> None:
    """``vinr upsample``'s arguments."""
    parser = sub.add_parser("upsample", help=cmd_upsample.__doc__, description=cmd_upsample.__doc__)
    parser.add_argument("input")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov, .webm)")
    space = parser.add_argument_group("space (one of)")
    space.add_argument("--scale", type=float, help="spatial factor, any real number in [1, 8], e.g. 3.5")
    space.add_argument("--width", type=int, help="output width (height follows the aspect ratio if not given)")
    space.add_argument("--height", type=int, help="output height")
    timing = parser.add_argument_group("time (one of)")
    timing.add_argument("--fps", type=float, help="output frame rate, e.g. 120")
    timing.add_argument("--time-factor", type=float, help="output rate as a multiple of the input's")
    slow = parser.add_argument_group("slow motion")
    slow.add_argument(
        "--slowmo",
        type=int,
        metavar="K",
        help=f"show the input K times slower (2 to {MAX_SLOWMO}): K times the frames and the duration, at the rate "
        "--fps/--time-factor give (the input's by default)",
    )
    slow.add_argument(
        "--slowmo-audio",
        choices=SLOWMO_AUDIO,
        default="drop",
        help="with --slowmo: drop the audio (default), or keep it slowed to the video's length (pitch kept)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="served checkpoint name or .safetensors path")
    parser.add_argument(
        "--adapt",
        type=float,
        metavar="SECONDS",
        help="first fine-tune the model on this video for about SECONDS (its frames, made smaller and sparser, "
        "are the examples); the adapted weights are used only where they beat the served ones on held-out "
        "windows of the video, and the gain is printed",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--half", action="store_true", help="float16 inference (CUDA)")
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 inference (CUDA; on a CPU with native bfloat16, its convolutions)"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="low-res tile side in pixels (0: no tiling; default 512 on a CPU, what the GPU's memory holds on CUDA)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="torch, onnx (ONNX Runtime; pip install 'vinr[onnx]') or auto (the faster measured on the device)",
    )
    parts = parser.add_argument_group("segments (resumable runs)")
    parts.add_argument(
        "--segments", type=int, metavar="N", help="make the output in N segments, joined without re-encoding"
    )
    parts.add_argument(
        "--resume", action="store_true", help="with --segments: keep the segments an interrupted run made"
    )
    look = parser.add_argument_group("preview (one frame, at once)")
    look.add_argument(
        "--preview", type=float, metavar="SECONDS", help="only the output frame nearest this time, as a PNG (-o x.png)"
    )
    look.add_argument("--compare", choices=COMPARISONS, help="with --preview: also the input frame by this filter")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_options(parser)
    parser.set_defaults(run=cmd_upsample)


def add_serve_command(sub) -> None:
    """``vinr serve``'s arguments."""
    parser = sub.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"), help="uvicorn's"
    )
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="a line per request (default on)"
    )
    parser.set_defaults(run=cmd_serve)


def add_worker_command(sub) -> None:
    """``vinr worker``'s arguments."""
    parser = sub.add_parser("worker", help=cmd_worker.__doc__, description=cmd_worker.__doc__)
    parser.add_argument("--device", help="auto, cpu or cuda:N (default: VINR_DEVICE or auto)")
    parser.add_argument("--queues", nargs="+", help="queues to listen on (default: VINR_QUEUE)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.set_defaults(run=cmd_worker)


def add_encode_command(sub) -> None:
    """``vinr encode``'s arguments."""
    parser = sub.add_parser("encode", help=cmd_encode.__doc__, description=cmd_encode.__doc__)
    parser.add_argument("input", help="a video; for dnerv also a folder of videos")
    parser.add_argument("-o", "--output", required=True, help="output bitstream (.nrff or .dnerv)")
    parser.add_argument("--codec", default=codecs.NAMES[0], choices=codecs.NAMES, help="neural codec")
    parser.add_argument("--segment", type=int, default=32, help="dnerv: frames per video when cutting one long video")
    parser.add_argument("--bpp", type=float, default=0.1, help="target bits per pixel of the whole video")
    parser.add_argument("--minutes", type=float, default=2.0, help="fitting time budget")
    parser.add_argument("--steps", type=int, default=3000, help="most fitting steps")
    parser.add_argument(
        "--weight-bits",
        type=int,
        default=8,
        choices=[5, 6, 8],
        help="nrff: bits per stored weight; fewer buy a wider network in the same size (better, decodes slower)",
    )
    parser.add_argument(
        "--residual-share",
        type=float,
        help="nrff: share of the bits for the latent residual, 0 to 0.9 (default: none; with short GOPs the "
        "keyframes did more with the bits on the evaluation clips, docs/codec.md)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=cmd_encode)


def add_decode_command(sub) -> None:
    """``vinr decode``'s arguments."""
    parser = sub.add_parser("decode", help=cmd_decode.__doc__, description=cmd_decode.__doc__)
    parser.add_argument("input")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov, .webm)")
    parser.add_argument("--frames", help="frame range START:STOP (half-open), e.g. 10:20")
    parser.add_argument("--video", help="dnerv: which video of the library (name or index; default the first)")
    parser.add_argument(
        "--no-output-limits",
        action="store_true",
        help="decode outputs larger than VINR_MAX_OUTPUT_PIXELS/FRAMES/WORK (the container's own limits still apply)",
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    add_output_options(parser)
    parser.set_defaults(run=cmd_decode)


def add_info_command(sub) -> None:
    """``vinr info``'s arguments."""
    parser = sub.add_parser("info", help=cmd_info.__doc__, description=cmd_info.__doc__)
    parser.add_argument("file", nargs="?", help="a video or a .nrff/.dnerv bitstream")
    parser.add_argument("--model", help="instead: a checkpoint's card, and the backends and providers it can run on")
    parser.set_defaults(run=cmd_info)


def version() -> str:
    """The installed distribution's version."""
    try:
        return importlib.metadata.version("vinr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vinr", description="Neural video upsampling and decoding.")
    parser.add_argument("--version", action="version", version=f"vinr {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_upsample_command(sub)
    add_serve_command(sub)
    add_worker_command(sub)
    add_encode_command(sub)
    add_decode_command(sub)
    add_info_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vinr`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vinr: %(message)s")
    try:
        check_environment()
    except SharedPackageError as exc:
        print(f"vinr: error: {exc}", file=sys.stderr)
        return 1
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader that went away fails here, inside the handler below, not at exit
        return code
    except VinrError as exc:
        print(f"vinr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vinr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (vinr info | head): nothing left to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
