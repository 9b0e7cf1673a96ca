"""Fixtures shared by test modules."""

from __future__ import annotations

import dataclasses

import pytest

from hwgen.models.lewm import LeWMConfig
from hwgen.models.pusht_data import PushTDataConfig
from hwgen.models.train_lewm import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_cnn_run(tmp_path_factory):
    """A folder holding `ck`, a 32 px CNN LeWM trained 2 steps on 6 expert episodes of 8 model
    steps (2 held out), and the build/ data cache that training wrote: the smallest real
    checkpoint for the planner-data and predictor-training tests. One per test module, so no
    module sees files another one wrote."""
    root = tmp_path_factory.mktemp("tiny_cnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = dataclasses.replace(LeWMConfig.small_cnn(), image_size=32, cnn_channels=8, name="c32")
        dcfg = PushTDataConfig(episodes=6, steps=8, render_size=32, seed=5, policy="expert")
        tcfg = TrainConfig(iters=2, batch=4, eval_every=2, ckpt_every=1000, val_frac=0.34)
        train(tcfg, dcfg, root / "ck", progress=False, model_cfg=cfg)
        yield root
