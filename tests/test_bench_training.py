"""Training benchmark: report structure only (a benchmark is never a timed test)."""

import json

import keras
import numpy as np
import pytest

from benchmarks import bench_training
from benchmarks.bench_training import bench_config, make_bench_data

pytestmark = pytest.mark.slow  # benchmark plumbing: times real training runs

TINY = {
    "dense_units": 8,
    "lstm_units": 4,
    "lstm_units_last": 4,
    "attention_units": 4,
    "head_units": [8],
    "batch_size": 16,
}


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_report_structure_and_consistency(tmp_path, capsys):
    out = tmp_path / "bench" / "training.json"
    returned = bench_training.bench_training(
        out, n_train=32, n_val=16, timesteps=4, feature_dim=8, epochs=3, config_overrides=TINY, repeats=1
    )
    report = json.loads(out.read_text())
    assert returned["path"] == str(out)
    assert {k: v for k, v in returned.items() if k != "path"} == report

    for key in ("machine", "data", "config", "method", "ours", "bare", "ratio", "target", "target_met", "overhead"):
        assert key in report
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["tensorflow"] and report["machine"]["keras"]
    assert report["data"] == {**report["data"], "n_train": 32, "n_val": 16, "timesteps": 4, "feature_dim": 8}
    assert report["config"]["augment_factor"] == 1 and report["config"]["epochs"] == 3
    assert report["config"]["early_stopping_patience"] == 3 and report["config"]["mixed_precision"] == "off"
    assert report["config"]["dense_units"] == 8 and report["config"]["head_units"] == [8]
    assert "bare then ours" in report["method"]["run_order"]

    assert report["method"]["repeats"] == 1
    for side in ("ours", "bare"):
        epochs = report[side]["epoch_seconds"]
        assert len(epochs) == 3 and all(s > 0 for s in epochs)  # every epoch ran (no early stop)
        assert report[side]["seconds_per_epoch"] > 0
        assert report[side]["seconds_per_epoch"] == pytest.approx(np.mean(epochs[1:]))  # epoch 1 excluded
        assert report[side]["all_runs_seconds_per_epoch"] == [report[side]["seconds_per_epoch"]]
    checks = report["cross_checks"]
    assert checks["ratio_of_medians"] == pytest.approx(
        checks["median_epoch_seconds"]["ours"] / checks["median_epoch_seconds"]["bare"]
    )
    assert checks["ratio_epoch_clock"] == pytest.approx(
        report["ours"]["seconds_per_epoch"] / report["bare"]["seconds_per_epoch"]
    )
    assert all(v > 0 for v in checks["fit_wall_seconds_per_epoch"].values())
    # the headline ratio counts everything fit does, epoch-end callbacks included
    assert report["ratio"] == pytest.approx(
        checks["fit_wall_seconds_per_epoch"]["ours"] / checks["fit_wall_seconds_per_epoch"]["bare"]
    )
    assert report["seconds_per_epoch"] == checks["fit_wall_seconds_per_epoch"]
    assert report["overhead"]["checkpoint"]["interval_s"] == 30.0
    assert report["target"] == 1.2 and report["target_met"] == (report["ratio"] <= 1.2)
    overhead = report["overhead"]
    assert overhead["seconds_per_epoch"] == pytest.approx(
        report["ours"]["seconds_per_epoch"] - report["bare"]["seconds_per_epoch"]
    )
    assert overhead["components_seconds_per_epoch"]["per_class_monitor"] > 0
    assert "fit_seconds" in overhead["ours_other_timings"]
    assert "ratio" in capsys.readouterr().out  # the one-line summary


def test_repeats_interleave_and_the_least_disturbed_run_counts(tmp_path, monkeypatch):
    calls = []
    bare_runs = iter([[5.0, 2.0, 2.0], [5.0, 1.0, 1.0], [5.0, 3.0, 3.0]])
    ours_runs = iter([[6.0, 1.5, 1.5], [6.0, 2.5, 2.5], [6.0, 4.0, 4.0]])
    probes = {"monitor_first_call_seconds": 0.5, "monitor_seconds_per_call": 0.1, "weights_copy_seconds": 0.01}

    def fake_bare(*args):
        calls.append("bare")
        epochs = next(bare_runs)
        return {
            "seconds_per_epoch": float(np.mean(epochs[1:])),
            "epoch_seconds": epochs,
            "fit_seconds": sum(epochs),
            "probes": probes,
            "n_parameters": 10,
        }

    def fake_ours(*args):
        calls.append("ours")
        epochs = next(ours_runs)
        timings = {
            "seconds_per_epoch": float(np.mean(epochs[1:])),
            "fit_seconds": sum(epochs) + 0.3,
            "checkpoint_seconds": 0.3,
            "checkpoint_commits": 3,
        }
        return {
            "seconds_per_epoch": timings["seconds_per_epoch"],
            "epoch_seconds": epochs,
            "fit_seconds": timings["fit_seconds"],
            "call_seconds": 20.0,
            "timings": timings,
            "epochs_run": 3,
        }

    monkeypatch.setattr(bench_training, "_run_bare", fake_bare)
    monkeypatch.setattr(bench_training, "_run_ours", fake_ours)
    report = bench_training.bench_training(
        tmp_path / "r.json", n_train=4, n_val=4, timesteps=2, feature_dim=2, epochs=3, repeats=3
    )
    assert calls == ["bare", "ours"] * 3
    assert report["bare"]["seconds_per_epoch"] == 1.0 and report["ours"]["seconds_per_epoch"] == 1.5
    assert report["bare"]["all_runs_seconds_per_epoch"] == [2.0, 1.0, 3.0]
    assert report["cross_checks"]["ratio_epoch_clock"] == 1.5
    assert report["ratio"] == pytest.approx(1.65) and report["target_met"] is False
    assert report["cross_checks"]["fit_wall_seconds_per_epoch"] == {"bare": 1.0, "ours": pytest.approx(1.65)}
    overhead = report["overhead"]
    assert overhead["seconds_per_epoch"] == 0.5 and overhead["fit_wall_seconds_per_epoch"] == pytest.approx(0.65)
    assert overhead["components_seconds_per_epoch"] == {"per_class_monitor": 0.1, "checkpoint": pytest.approx(0.1)}
    assert overhead["unexplained_seconds_per_epoch"] == pytest.approx(0.65 - 0.1 - 0.1)
    assert overhead["checkpoint"]["seconds_per_commit"] == pytest.approx(0.1)


def test_data_is_deterministic_balanced_float32():
    a = make_bench_data(10, 6, 3, 8, seed=1)
    b = make_bench_data(10, 6, 3, 8, seed=1)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    x_train, y_train, x_val, y_val = a
    assert x_train.shape == (10, 3, 8) and x_train.dtype == np.float32 and x_val.shape == (6, 3, 8)
    assert np.bincount(y_train).tolist() == [5, 5] and np.bincount(y_val).tolist() == [3, 3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 1}, "epochs"),
        ({"epochs": 3, "config_overrides": {"no_such_key": 1}}, "unknown parameter"),
        ({"epochs": 3, "config_overrides": {"epochs": 9}}, "must not set"),
        ({"epochs": 3, "config_overrides": {"batch_size": 0}}, "batch_size"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench_config(**kwargs)


def test_bad_sizes_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        bench_training.bench_training(tmp_path / "x.json", n_train=1, n_val=4, timesteps=2, feature_dim=2, epochs=2)
    with pytest.raises(ValueError, match="repeats"):
        bench_training.bench_training(
            tmp_path / "x.json", n_train=4, n_val=4, timesteps=2, feature_dim=2, epochs=2, repeats=0
        )
    assert not (tmp_path / "x.json").exists()
