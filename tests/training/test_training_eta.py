"""The training ETA spans both stages, weighting each stage's remaining samples by its cost per sample."""

from __future__ import annotations

import pytest

from bindrt.training.loop import remaining_seconds


def test_eta_counts_later_stages_at_their_own_cost():
    stages = [("clip", 0, 100), ("bind", 100, 300)]
    costs = {"clip": 2.0, "bind": 5.0}
    # at step 40 of the clip stage, 8 samples/s measured there: 60 clip steps + 200 bind steps of 4 samples
    eta = remaining_seconds(stages, 40, "clip", work_per_s=8 * costs["clip"], costs=costs, batch_size=4)
    assert eta == pytest.approx((60 * 4 * 2.0 + 200 * 4 * 5.0) / 16.0)
    # in the bind stage only its own remaining steps count
    eta = remaining_seconds(stages, 250, "bind", work_per_s=3 * costs["bind"], costs=costs, batch_size=4)
    assert eta == pytest.approx(50 * 4 / 3)


def test_stage_costs_follow_the_towers_each_stage_runs(tmp_path):
    from bindrt.training.loop import Run, TrainConfig, build_model, stage_costs, start_run

    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        preset="tiny",
        steps=4,
        batch_size=4,
        modalities=("audio", "imu"),
        device="cpu",
        workers=0,
        pool=0,
        quiet=True,
    )
    run: Run = start_run(cfg)
    build_model(run)
    live, frozen = stage_costs(run, frozen_images=False), stage_costs(run, frozen_images=True)
    assert frozen["bind"] < live["bind"]  # frozen image embeddings computed once cost nothing per step
    assert live["clip"] == frozen["clip"] > 0
    run.dist.close()
