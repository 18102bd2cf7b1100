"""Field adaptation (notebook 08): per-camera thresholds, camera centering, the simulation over cameras and what it
reports, on small synthetic scores and features; the notebook itself on the smoke run."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nexara_lib.evaluation.adaptation import (
    CameraThresholdRule,
    balanced_accuracy_threshold,
    camera_bootstrap,
    choose_kappa,
    fit_camera_threshold_rule,
    leave_one_out_levels,
    metrics_of,
    threshold_at_false_alarm_rate,
)
from nexara_lib.evaluation.adaptation_report import learning_curve, reviewed_needed, threshold_comparison
from nexara_lib.training.adaptation import (
    AdaptationPlan,
    LinearProbe,
    camera_folds,
    choose_strength,
    pooled_statistics,
    simulate_adaptation,
)
from nexara_lib.training.camera_centering import CameraCentering


def _camera_scores(seed=0, cameras=12, normal=8, fights=4, spread=2.0):
    """Logits of clips of cameras whose normal footage sits at its own level (a camera effect)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(cameras):
        level = rng.normal(0, spread)
        rows += [(f"cam{c}", 0, level + rng.normal()) for _ in range(normal)]
        rows += [(f"cam{c}", 1, level + 3 + rng.normal()) for _ in range(fights)]
    frame = pd.DataFrame(rows, columns=["camera", "y", "score"])
    return frame["score"].to_numpy(), frame["y"].to_numpy(), frame["camera"].to_numpy()


def test_false_alarm_threshold_lets_through_at_most_the_rate():
    scores = np.arange(20.0)
    for rate, alarmed in ((0.05, 1), (0.1, 2), (0.01, 0)):
        threshold = threshold_at_false_alarm_rate(scores, rate)
        assert int(np.sum(scores >= threshold)) == alarmed
    with pytest.raises(ValueError, match="at least one"):
        threshold_at_false_alarm_rate([], 0.05)
    assert -1 < balanced_accuracy_threshold([0, 0, 1, 1], [-3.0, -1.0, 1.0, 2.0]) < 1


def test_leave_one_out_levels_never_use_the_clip_itself():
    scores = np.array([1.0, 3.0, 10.0, 5.0])  # cam a: two normal clips and a fight; cam b: one normal clip
    y, cameras = np.array([0, 0, 1, 0]), np.array(["a", "a", "a", "b"])
    np.testing.assert_allclose(leave_one_out_levels(scores, y, cameras, 0.0, 0.0)[:3], [3.0, 1.0, 2.0])
    # camera b's only normal clip has no other footage: with kappa 1 it gets the global level
    assert leave_one_out_levels(scores, y, cameras, 1.0, -4.0)[3] == -4.0
    np.testing.assert_allclose(leave_one_out_levels(scores, y, cameras, 1.0, -4.0)[0], (3.0 - 4.0) / 2)
    assert (leave_one_out_levels(scores, y, cameras, np.inf, 7.0) == 7.0).all()


def test_camera_threshold_rule_is_level_plus_offset_and_round_trips():
    rule = CameraThresholdRule(global_level=-2.0, offset=3.0, kappa=2.0, false_alarm_rate=0.05)
    assert rule.threshold([0.0, 0.0]) == pytest.approx((0 + 2 * -2.0) / 4 + 3.0)
    assert rule.threshold([]) == pytest.approx(1.0)  # no footage: the global threshold
    assert rule.camera_state([1.0, 3.0]) == {"level": 0.0, "normal_clips": 2, "threshold_logit": 3.0}
    assert CameraThresholdRule.from_json(json.loads(json.dumps(rule.to_json()))) == rule
    glob = CameraThresholdRule(-2.0, 3.0, np.inf, 0.05)
    assert glob.to_json()["kappa"] == "inf" and CameraThresholdRule.from_json(glob.to_json()) == glob
    with pytest.raises(ValueError, match="needs"):
        CameraThresholdRule.from_json({"offset": 1})


def test_per_camera_threshold_catches_more_fights_where_cameras_differ():
    """Fit on one set of cameras, judged on new ones: at about the same false-alarm rate the per-camera rule
    catches more fights than the global threshold when normal footage sits at a camera's own level; and it is
    chosen (a finite shrinkage) there, while without a camera effect the global threshold is kept."""
    s, y, cams = _camera_scores(seed=1, cameras=30)
    kappa = choose_kappa(s, y, cams, 0.05, [0.3, 1, 3, 10])
    assert np.isfinite(kappa)
    rule, glob = fit_camera_threshold_rule(s, y, cams, 0.05, kappa), fit_camera_threshold_rule(s, y, cams, 0.05, np.inf)
    ts, ty, tc = _camera_scores(seed=2, cameras=30)
    per_camera = leave_one_out_levels(ts, ty, tc, kappa, rule.global_level) + rule.offset
    at_camera = metrics_of(ty, ts, 0.0, per_camera)
    at_global = metrics_of(ty, ts, 0.0, np.full(len(ts), glob.threshold([])))
    assert at_camera["recall"] > at_global["recall"] + 0.15
    assert at_camera["false_alarm_rate"] < 0.1 and at_camera["false_alarm_rate"] <= at_global["false_alarm_rate"] + 0.02
    flat_s, flat_y, flat_c = _camera_scores(seed=3, cameras=30, spread=0.0)
    assert choose_kappa(flat_s, flat_y, flat_c, 0.05, [0.3, 1]) == np.inf


def test_camera_bootstrap_resamples_whole_cameras():
    s, y, cams = _camera_scores(seed=4, cameras=6)

    def statistic(idx):
        return metrics_of(y[idx], s[idx], 1.5, np.full(len(idx), 1.5))

    ci = camera_bootstrap(cams, statistic, 200, seed=0)
    for value, low, high in ci.values():
        assert low <= value <= high or not np.isfinite(value)
    one = camera_bootstrap(np.array(["a"] * len(s)), statistic, 50, seed=0)
    assert all(low == high == value for value, low, high in one.values())  # one camera: nothing to resample
    with pytest.raises(ValueError, match="positive integer"):
        camera_bootstrap(cams, statistic, 0, seed=0)


def test_linear_probe_is_the_l2_logistic_regression_on_standardised_features():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(40, 300)), np.repeat([0, 1], 20)
    z[y == 1, :5] += 1.0
    test = rng.normal(size=(7, 300))
    probe = LinearProbe(0.1).fit(z, y)
    mean, scale = z.mean(0), z.std(0)
    reference = LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced").fit((z - mean) / scale, y)
    np.testing.assert_allclose(probe.scores(test), reference.decision_function((test - mean) / scale), atol=1e-4)
    with pytest.raises(ValueError, match="both classes"):
        LinearProbe(1.0).fit(z[:10], np.zeros(10))


def test_pooled_statistics_are_mean_std_and_mean_abs_difference():
    x = np.arange(24, dtype=float).reshape(2, 4, 3) ** 1.5
    pooled = pooled_statistics(x)
    np.testing.assert_allclose(pooled[:, :3], x.mean(1))
    np.testing.assert_allclose(pooled[:, 3:6], x.std(1))
    np.testing.assert_allclose(pooled[:, 6:], np.abs(np.diff(x, axis=1)).mean(1))
    with pytest.raises(ValueError, match="T >= 2"):
        pooled_statistics(np.zeros((2, 1, 3)))


def test_camera_centering_leaves_each_normal_clip_out_and_saves(tmp_path):
    pooled = np.array([[1.0, 0.0], [3.0, 0.0], [10.0, 5.0], [7.0, 7.0]])
    y, cameras = np.array([0, 0, 1, 0]), np.array(["a", "a", "a", "b"])
    centering = CameraCentering.fit(pooled, y, shrinkage=0.0)
    np.testing.assert_allclose(centering.global_mean, [11 / 3, 7 / 3])
    out = centering.leave_one_out(pooled, y, cameras)
    np.testing.assert_allclose(out[0], [1 - 3, 0])  # centered on the other normal clip only
    np.testing.assert_allclose(out[2], [10 - 2, 5])  # a fight: on both normal clips
    np.testing.assert_allclose(out[3], [7 - 11 / 3, 7 - 7 / 3])  # no other footage: the global mean
    state = CameraCentering.fit(pooled, y, shrinkage=2.0).camera_state(pooled[:2])
    assert state["normal_clips"] == 2 and np.allclose(
        state["center"], (pooled[:2].sum(0) + 2 * centering.global_mean) / 4
    )
    loaded = CameraCentering.load(centering.save(tmp_path / "centering.npz"))
    np.testing.assert_array_equal(loaded.global_mean, centering.global_mean)
    assert loaded.shrinkage == 0.0
    np.savez(tmp_path / "other.npz", global_mean=np.zeros(2), shrinkage=1.0)
    with pytest.raises(ValueError, match="version"):
        CameraCentering.load(tmp_path / "other.npz")


def _pool(seed=0, cameras=8, per_camera=6, dim=12):
    """Pooled features: a shared fight direction, plus each camera's scene offset."""
    rng = np.random.default_rng(seed)
    x, y, groups = [], [], []
    for c in range(cameras):
        scene = rng.normal(0, 2.0, size=dim)
        for i in range(per_camera):
            label = i % 2
            x.append(scene + rng.normal(size=dim) + label * 1.5 * np.eye(dim)[0])
            y.append(label)
            groups.append(f"cam{c}")
    return np.array(x), np.array(y), np.array(groups)


PLAN = AdaptationPlan(
    ks=(0, 1, 2),
    draws=2,
    fold_seeds=(0, 1),
    cv_folds=4,
    strength=1.0,
    review_weight=2.0,
    kappa_grid=(1.0, 3.0),
    calibration_negatives=True,
    center_shrinkage=3.0,
    false_alarm_rate=0.1,
)


def test_simulation_scores_only_clips_that_were_not_reviewed_and_is_deterministic():
    x, y, groups = _pool()
    ids = np.array([f"clip{i}" for i in range(len(y))])
    rows = simulate_adaptation(x, y, groups, ids, PLAN, progress=False)
    again = simulate_adaptation(x, y, groups, ids, PLAN, progress=False)
    pd.testing.assert_frame_equal(rows, again)
    assert set(rows["design"]) == {"plain", "adapted"} and set(rows["k"]) == {0, 1, 2}
    k0 = rows[rows["k"] == 0]
    # k = 0: every clip scored once per fold seed and design
    assert (k0.groupby(["fold_seed", "design"])["clip_id"].nunique() == len(y)).all()
    assert not k0.duplicated(["fold_seed", "design", "clip_id"]).any()
    for (_, _, k, _, _), part in rows.groupby(["fold_seed", "draw", "k", "design", "camera"]):
        assert len(part) == 6 - min(k, 5) and (part["reviewed"] == min(k, 5)).all()
        assert part["clip_id"].is_unique
        # a clip's per-camera threshold comes from its camera's other scored normal clips
        normal = int((part["y"] == 0).sum())
        assert (part["calibration_clips"] == np.where(part["y"] == 0, normal - 1, normal)).all()
    assert len(rows.attrs["folds"]) == 8 and {"plain", "adapted"} <= set(rows.attrs["folds"][0])
    folds = camera_folds(y, groups, 4, seed=0)
    assert all(not set(groups[fit]) & set(groups[held]) for fit, held in folds)


def test_report_measures_thresholds_and_the_learning_curve_with_cis():
    x, y, groups = _pool(seed=3, cameras=10)
    ids = np.array([f"clip{i}" for i in range(len(y))])
    plan = AdaptationPlan(**{**PLAN.__dict__, "calibration_negatives": False, "center_shrinkage": None})
    rows = simulate_adaptation(x, y, groups, ids, plan, progress=False)
    comparison = threshold_comparison(rows, 100, seed=0)
    assert list(comparison.index) == ["global threshold", "per-camera threshold", "per-camera minus global"]
    assert comparison.loc["per-camera minus global", "significance of the recall difference"] in (
        "significant",
        "not significant",
    )
    curve = learning_curve(rows, 100, seed=0)
    assert len(curve) == 6 and (curve["accuracy_ci_low"] <= curve["accuracy"]).all()
    assert (
        curve.loc[curve["k"] == 0, "gain_accuracy"].isna().all()
        and curve.loc[curve["k"] > 0, "gain_accuracy"].notna().all()
    )
    needed = reviewed_needed(curve)
    assert needed["k"] in (0, 1, 2) and 0 <= needed["recall"] <= 1
    strength = choose_strength(x, y, groups, [0.01, 1.0], cv_folds=3)
    assert strength in (0.01, 1.0)


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
def test_notebook_08_on_the_smoke_run_measures_held_out_cameras_never_test(smoke_run):
    art = smoke_run / "artifacts"
    run = json.loads((smoke_run / "run.json").read_text())
    assert run["notebooks"]["08_field_adaptation"]["status"] == "ok"
    result = json.loads((art / "adaptation.json").read_text())
    assert result["probe_stands_in"] and result["cameras"] >= 3
    assert [r["threshold"] for r in result["thresholds"]][:2] == ["global threshold", "per-camera threshold"]
    assert {(r["design"], r["k"]) for r in result["learning_curve"]} == {
        (d, k) for d in ("plain", "adapted") for k in (0, 1, 2, 4)
    }
    rows = pd.read_csv(art / "adaptation_rows.csv")
    manifest = pd.read_csv(art / "manifest.csv")
    test_clips = set(manifest.loc[manifest["split"] == "test", "clip_id"])
    assert rows["clip_id"].isin(manifest["clip_id"]).all() and not rows["clip_id"].isin(test_clips).any()
    # the cameras are the synthetic generator's: every camera of the pool is held out and scored
    pool = manifest[manifest["split"].isin(["train", "val"])]
    assert set(rows["camera"]) == set(pool["group"]) and pool["group"].str.startswith("csv:cam").all()
    assert (art / "figures" / "adaptation_curve.png").is_file() and (
        art / "figures" / "camera_thresholds.png"
    ).is_file()
    summary = json.loads((art / "summaries.json").read_text())["08_field_adaptation"]
    assert "cameras held out" in summary["result"] and "never on test" in summary["verdict"]
    page = (smoke_run / "reports" / "08_field_adaptation.html").read_text()
    assert "reviewed" in page and "Traceback" not in page
