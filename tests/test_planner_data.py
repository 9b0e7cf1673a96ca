"""planner_data: the CEM planner's own plans played in the simulator, as training clips. Tasks
come from the checkpoint's training episodes only, the file is the same for any worker count,
and train_lewm reads it back (--mix-data) or refuses it in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwgen.models.planner_data import (
    ClipFileError,
    PlannerDataConfig,
    draw_training_tasks,
    generate,
    load_clip_files,
    load_clips,
    save,
)
from hwgen.models.train_lewm import main

torch.set_num_threads(1)
SIZE = 32


def test_tasks_come_from_the_training_episodes_only():
    states = np.zeros((10, 9, 5))
    tasks = draw_training_tasks(states, np.arange(7), 200, 5, seed=0)
    assert {e for e, _ in tasks} <= set(range(7)) and len({e for e, _ in tasks}) == 7
    assert all(0 <= r <= 3 for _, r in tasks)
    assert tasks == draw_training_tasks(states, np.arange(7), 200, 5, seed=0)


def test_clips_are_the_plans_played_and_any_worker_count_gives_them(tiny_cnn_run, monkeypatch):
    monkeypatch.chdir(tiny_cnn_run)
    cfg = PlannerDataConfig(str(tiny_cnn_run / "ck"), tasks=3, iters=2, candidates=2, seed=1)
    one = generate(cfg, workers=1, progress=False)
    two = generate(cfg, workers=2, progress=False)
    assert one["frames"].shape == (6, 6, SIZE, SIZE, 3) and one["actions"].shape == (6, 5, 5, 2)
    for key in ("frames", "actions", "states"):
        assert np.array_equal(one[key], two[key]), key
    # both clips of a task start from the same expert state, then play different plans
    assert np.array_equal(one["states"][0, 0], one["states"][1, 0])
    assert not np.array_equal(one["actions"][0], one["actions"][1])


def test_per_iter_adds_the_search_path_after_the_same_clips(tiny_cnn_run, monkeypatch):
    """`per_iter` appends each earlier iteration's cheapest elites to a task's clips; the
    clips without it come first, unchanged (the same search, seeded per task)."""
    monkeypatch.chdir(tiny_cnn_run)
    base = PlannerDataConfig(str(tiny_cnn_run / "ck"), tasks=2, iters=3, candidates=2, seed=4)
    path = dataclasses.replace(base, per_iter=2)
    assert path.clips_per_task == 2 + 2 * 2
    a, b = generate(base, progress=False), generate(path, progress=False)
    assert len(a["frames"]) == 4 and len(b["frames"]) == 12
    for t in range(2):
        for key in ("frames", "actions", "states"):
            assert np.array_equal(a[key][2 * t : 2 * t + 2], b[key][6 * t : 6 * t + 2]), key
        extra = b["actions"][6 * t + 2 : 6 * t + 6]
        assert np.array_equal(b["states"][6 * t + 2 :, 0][:4], b["states"][[6 * t] * 4, 0])
        assert len({arr.tobytes() for arr in extra}) == 4  # four different plans


def test_train_reads_the_file_back_and_records_its_source(
    tiny_cnn_run, monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tiny_cnn_run)
    cfg = PlannerDataConfig(str(tiny_cnn_run / "ck"), tasks=2, iters=1, candidates=2)
    path = save(generate(cfg, progress=False), cfg, tmp_path / "pd.npz")
    clips = load_clips(path, SIZE, 5)
    assert clips["source"]["kind"] == "planner" and clips["source"]["tasks"] == 2
    both = load_clip_files([str(path), str(path)], SIZE, 5)
    assert len(both["frames"]) == 2 * len(clips["frames"]) == 8
    assert [f["path"] for f in both["source"]] == [str(path)] * 2
    argv = [
        "--preset", "small_cnn", "--image-size", str(SIZE), "--policy", "expert",
        "--episodes", "6", "--steps", "8", "--data-seed", "5", "--iters", "2", "--batch", "4",
        "--rollout-steps", "5", "--mix-data", str(path), "--mix-frac", "0.5",
        "--out", str(tmp_path / "ft"), "--plot", str(tmp_path / "p.png"),
    ]  # fmt: skip
    # --init with another configuration (the fixture's has 8 conv channels): one line, exit 2
    assert main([*argv, "--init", str(tiny_cnn_run / "ck")]) == 2
    assert "--init checkpoint has another model configuration" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def test_bad_clip_files_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ClipFileError, match="no such clip file"):
        load_clips(tmp_path / "none.npz", SIZE, 5)
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        frames=np.zeros((2, 6, SIZE, SIZE, 3), np.uint8),
        actions=np.zeros((2, 4, 5, 2), np.float32),  # one step short
        states=np.zeros((2, 6, 5), np.float32),
    )
    with pytest.raises(ClipFileError, match=r"bad\.npz: actions is float32 \(2, 4, 5, 2\)"):
        load_clips(bad, SIZE, 5)
    with pytest.raises(ClipFileError, match="frames of 64 px"):
        load_clips(bad, 64, 5)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ClipFileError, match="not a clip file"):
        load_clips(tmp_path / "junk.npz", SIZE, 5)
