"""Alignment and cost bookkeeping of the TTA and ensemble stages (pure functions, no training)."""

import numpy as np
import pandas as pd

from nexara_lib.stages.ensemble import _align
from nexara_lib.stages.tta import _align_views, tta_slowdown, views_table


def test_tta_views_keep_only_clips_every_view_scored():
    raw = {
        "identity": {"val": (["a", "b", "c"], [0, 1, 1], [0.1, 0.8, 0.7]), "test": (["d", "e"], [0, 1], [0.2, 0.9])},
        "hflip": {"val": (["a", "c"], [0, 1], [0.2, 0.6]), "test": (["d", "e"], [0, 1], [0.3, 0.8])},
    }
    views = _align_views(raw)
    assert views["identity"]["val"].clip_ids == ("a", "c") == views["hflip"]["val"].clip_ids
    np.testing.assert_allclose(views["identity"]["val"].prob, [0.1, 0.7])
    assert views["hflip"]["test"].split == "test"
    table = views_table(views, 0.5)
    assert table.loc["identity", "val balanced accuracy"] == 1.0


def test_tta_slowdown_counts_extra_extraction_of_frame_views():
    costs = pd.DataFrame(
        [
            {"view": "identity", "level": "frame", "extract_s_per_clip": 0.10, "predict_s_per_clip": 0.01},
            {"view": "hflip", "level": "frame", "extract_s_per_clip": 0.10, "predict_s_per_clip": 0.01},
            {"view": "feature_shift", "level": "feature", "extract_s_per_clip": 0.0, "predict_s_per_clip": 0.01},
        ]
    )
    assert tta_slowdown(costs, ["identity"])["slowdown_x"] == 1.0
    both = tta_slowdown(costs, ["identity", "hflip", "feature_shift"])
    assert abs(both["seconds_per_clip_with"] - 0.23) < 1e-9 and abs(both["slowdown_x"] - 0.23 / 0.11) < 1e-9


def test_ensemble_members_are_aligned_on_common_clips_in_one_order():
    members = [
        {"val": (["a", "b", "c"], [0, 1, 0], [0.1, 0.9, 0.2]), "test": (["x", "y"], [1, 0], [0.7, 0.1])},
        {"val": (["c", "a"], [0, 0], [0.3, 0.4]), "test": (["y", "x"], [0, 1], [0.2, 0.6])},
    ]
    aligned = _align(members)
    assert aligned[0]["val"].clip_ids == aligned[1]["val"].clip_ids == ("a", "c")
    np.testing.assert_allclose(aligned[1]["val"].prob, [0.4, 0.3])
    np.testing.assert_allclose(aligned[1]["test"].prob, [0.6, 0.2])
    assert list(aligned[1]["test"].y_true) == [1, 0]


def test_an_ensemble_member_with_the_runs_recipe_seed_and_clips_is_03s_model(tmp_path):
    from pathlib import Path

    from nexara_lib.run.params import resolve_params
    from nexara_lib.stages.data import FeatureSplit, RunRecipe, member_streams
    from nexara_lib.stages.ensemble import _fingerprint, _is_run_model, _member_config

    files = [Path(__file__).resolve().parents[1] / "params" / f for f in ("base.yaml", "demo.yaml")]
    model = tmp_path / "model.keras"
    model.write_bytes(b"a trained model")

    rng = np.random.default_rng(0)
    splits = {
        name: FeatureSplit(
            name,
            rng.normal(size=(4, 3, 2)).astype(np.float32),
            np.array([0, 1, 0, 1]),
            [f"{name}-{i}" for i in range(4)],
        )
        for name in ("train", "val")
    }

    def fingerprint(params, member, data=splits):
        return _fingerprint(_member_config(member, params), member_streams(member, params), data)

    params = resolve_params(files)
    recipe = RunRecipe(params, member_streams({}, params), model, None)
    assert _is_run_model(recipe, fingerprint(params, {"model": params["model"]}), splits)  # reused, not retrained
    assert not _is_run_model(recipe, fingerprint(params, {"model": params["model"], "seed": 1}), splits)
    assert not _is_run_model(recipe, fingerprint(params, {"model": "pooled_mlp"}), splits)
    changed = dict(splits, val=FeatureSplit("val", splits["val"].x + 1, splits["val"].y, splits["val"].clip_ids))
    assert not _is_run_model(recipe, fingerprint(params, {"model": params["model"]}, changed), splits)  # other data
    with_copies = resolve_params(files, {"frame_augment_copies": 1})  # 03 also trained on frame-augmented copies
    recipe = RunRecipe(with_copies, member_streams({}, with_copies), model, None)
    assert not _is_run_model(recipe, fingerprint(with_copies, {"model": with_copies["model"]}), splits)
    model.unlink()
    assert not _is_run_model(
        RunRecipe(params, member_streams({}, params), model, None),
        fingerprint(params, {"model": params["model"]}),
        splits,
    )
