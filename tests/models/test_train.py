"""Training resumes where it stopped: a run cut in two ends with the same weights as one run."""

from __future__ import annotations

import json

import numpy as np
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


def run(folder, work, out, steps):
    argv = ["--data", str(folder), "--work", str(work), "--out", str(out), "--steps", str(steps), "--batch", "2"]
    argv += ["--lr-patch", "8", "--points", "64", "--log-every", "1", "--val-every", "100", "--save-every", "1"]
    assert train.main(argv) == 0
    return load_file(str(out.with_suffix(".safetensors")))


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    folder = tiny_dataset(tmp_path / "data")
    whole = run(folder, tmp_path / "work-a", tmp_path / "a", steps=4)
    run(folder, tmp_path / "work-b", tmp_path / "b", steps=2)
    resumed = run(folder, tmp_path / "work-b", tmp_path / "b", steps=4)
    assert json.loads((tmp_path / "b.json").read_text())["steps"] == 4
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert (whole[name] - resumed[name]).abs().max() < 1e-6, name
