"""Feature augmentation, focal loss, learning-rate schedule, per-class monitor and the training loop."""

import json
import logging

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nexara_lib import runtime
from nexara_lib.config import SCHEMA
from nexara_lib.training import augment, models
from nexara_lib.training import train as training
from nexara_lib.training.figures import plot_training_history
from nexara_lib.training.losses import FocalLoss, alpha_from_labels
from nexara_lib.training.model_files import load_sequence_model
from nexara_lib.training.monitor import PER_CLASS_LOG_KEYS, PerClassMonitor, monitor_mode
from nexara_lib.training.schedule import WarmupCosine
from nexara_lib.transforms.registry import available_transforms

# --- synthetic data ---------------------------------------------------------------------


def burst_clips(n, t=8, d=6, seed=0, violent_fraction=0.5):
    """Noise clips; violent ones carry a 3-step burst on 3 of 6 features at a random time (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, d)).astype("float32")
    y = (np.arange(n) < int(round(n * violent_fraction))).astype(int)
    for i in np.flatnonzero(y == 1):
        start = rng.integers(0, t - 2)
        x[i, start : start + 3, :3] += 3.0
    order = rng.permutation(n)
    return x[order], y[order]


# tiny model and schedule; every other run parameter at its schema default, as the notebook passes them
TINY_CONFIG = {
    **{k: p.default for k, p in SCHEMA.items()},
    "model": "hybrid",
    "dense_units": 16,
    "lstm_units": 8,
    "lstm_units_last": 4,
    "attention_units": 8,
    "head_units": [16, 8],
    "dropout": 0.1,
    "epochs": 25,
    "batch_size": 8,
    "warmup_epochs": 2,
    "early_stopping_patience": 12,
    "augment_factor": 2,
    "learning_rate": 3e-3,
    "seed": 7,
}


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# --- augmentation ---------------------------------------------------------------------------


def separated_classes(n=20, t=6, d=5, seed=0):
    """Class 0 values in [-2, -1], class 1 in [1, 2]: any cross-class mix leaves those ranges."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(1, 2, size=(n, t, d)).astype("float32")
    x[y == 0] *= -1
    return x, y


@pytest.mark.parametrize("op", available_transforms("feature", "augment"))
def test_each_op_keeps_shape_dtype_and_finite_values(op):
    x, y = separated_classes()
    out = augment.apply_augmentation(op, x, y, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert not np.allclose(out, x), f"{op} left every clip unchanged"
    np.testing.assert_array_equal(out, augment.apply_augmentation(op, x, y, np.random.default_rng(1)))
    assert np.array_equal(x, separated_classes()[0]), f"{op} modified its input in place"


def test_mix_never_mixes_classes():
    x, y = separated_classes()
    out = augment.apply_augmentation("mix", x, y, 0)
    assert np.all(out[y == 0] <= -1) and np.all(out[y == 0] >= -2)
    assert np.all(out[y == 1] >= 1) and np.all(out[y == 1] <= 2)
    x_aug, y_aug = augment.augment_training_set(x, y, 4, ["mix"], np.random.default_rng(0))
    assert np.all(x_aug[y_aug == 0] < 0) and np.all(x_aug[y_aug == 1] > 0)


def test_temporal_shift_moves_frames_and_pads_with_the_edge():
    t = 10
    x = np.broadcast_to(np.arange(t, dtype="float32")[None, :, None], (30, t, 3)).copy()
    out = augment.apply_augmentation("temporal_shift", x, np.zeros(30, int), 0)
    steps = np.diff(out[:, :, 0], axis=1)
    assert set(np.unique(steps)) <= {0.0, 1.0}  # frames keep their order, repeated only at an edge
    assert np.all(out[:, :, 0] == out[:, :, 1])  # a time step moves as a whole
    shifts = out[:, t // 2, 0] - t // 2
    assert np.abs(shifts).max() <= 2 and np.any(shifts != 0)


def test_speed_resamples_time_monotonically():
    t = 12
    x = np.broadcast_to(np.arange(t, dtype="float32")[None, :, None], (30, t, 2)).copy()
    out = augment.apply_augmentation("speed", x, np.zeros(30, int), 0)
    assert np.all(np.diff(out[:, :, 0], axis=1) >= -1e-6)
    assert out.min() >= 0 and out.max() <= t - 1


def test_noise_is_scaled_by_the_feature_std():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 10, 4)) * np.array([0.01, 1.0, 10.0, 100.0])).astype("float32")
    out = augment.apply_augmentation("noise", x, np.zeros(200, int), 1)
    ratio = (out - x).std(axis=(0, 1)) / x.std(axis=(0, 1))
    np.testing.assert_allclose(ratio, 0.1, rtol=0.1)


def test_feature_dropout_zeroes_whole_channels():
    x = np.ones((50, 6, 20), dtype="float32")
    out = augment.apply_augmentation("feature_dropout", x, np.zeros(50, int), 0)
    assert np.all((out == 0).all(axis=1) | (out == 1).all(axis=1))  # a channel is dropped for the whole clip
    assert 0.03 < (out == 0).mean() < 0.2


def test_augment_training_set_balances_classes():
    x, y = burst_clips(40, violent_fraction=0.25)  # 30 non-violent, 10 violent
    x_aug, y_aug = augment.augment_training_set(x, y, 3, ["noise", "feature_dropout", "temporal_shift", "mix"], 0)
    assert x_aug.shape == (120, 8, 6) and x_aug.dtype == np.float32
    assert np.sum(y_aug == 0) == np.sum(y_aug == 1) == 60
    np.testing.assert_array_equal(x_aug[:40], x)  # originals first, unchanged
    np.testing.assert_array_equal(y_aug[:40], y)
    assert np.all(np.isfinite(x_aug))


def test_augment_training_set_prefers_balance_over_the_exact_total():
    x, y = burst_clips(60, violent_fraction=1 / 6)  # 50 non-violent, 10 violent
    _, y_aug = augment.augment_training_set(x, y, 1.5, ["noise"], 0)
    assert np.sum(y_aug == 0) == np.sum(y_aug == 1) == 50


def test_factor_one_returns_the_originals():
    x, y = burst_clips(20)
    x_aug, y_aug = augment.augment_training_set(x, y, 1, ["noise"], 0)
    np.testing.assert_array_equal(x_aug, x)
    np.testing.assert_array_equal(y_aug, y)


def test_augment_rejects_bad_arguments():
    x, y = burst_clips(20)
    with pytest.raises(ValueError, match="available") as err:
        augment.augment_training_set(x, y, 2, ["noise", "cutmix"], 0)
    assert "temporal_shift" in str(err.value)
    with pytest.raises(ValueError, match="feature-level augmentation"):  # a frame op or a test-time view
        augment.augment_training_set(x, y, 2, ["noise", "hflip"], 0)
    with pytest.raises(ValueError, match=">= 1"):
        augment.augment_training_set(x, y, 0.5, ["noise"], 0)
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        augment.augment_training_set(x[0], y, 2, ["noise"], 0)
    with pytest.raises(ValueError, match="labels"):
        augment.augment_training_set(x, y + 1, 2, ["noise"], 0)


# --- focal loss and alpha ----------------------------------------------------------------------


def test_focal_loss_with_gamma_zero_is_half_cross_entropy():
    y_true = np.eye(2, dtype="float32")[[0, 1, 1, 0]]
    y_pred = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype="float32")
    focal = float(FocalLoss(gamma=0.0, alpha=0.5)(y_true, y_pred))
    ce = float(keras.losses.CategoricalCrossentropy()(y_true, y_pred))
    assert focal == pytest.approx(0.5 * ce, rel=1e-5)


def test_focal_loss_down_weights_easy_examples():
    loss = FocalLoss(gamma=2.0, alpha=0.5, reduction=None)
    y_true = np.eye(2, dtype="float32")[[1, 1]]
    y_pred = np.array([[0.05, 0.95], [0.7, 0.3]], dtype="float32")  # easy, hard
    focal = keras.ops.convert_to_numpy(loss(y_true, y_pred))
    ce = -np.log([0.95, 0.3])
    np.testing.assert_allclose(focal, 0.5 * np.array([0.05, 0.7]) ** 2 * ce, rtol=1e-5)
    assert focal[0] / ce[0] < 0.01 < focal[1] / ce[1]


def test_focal_alpha_weights_the_violent_class():
    loss = FocalLoss(gamma=0.0, alpha=0.75, reduction=None)
    y_pred = np.array([[0.5, 0.5], [0.5, 0.5]], dtype="float32")
    values = keras.ops.convert_to_numpy(loss(np.eye(2, dtype="float32"), y_pred))
    assert values[1] / values[0] == pytest.approx(3.0, rel=1e-5)


def test_focal_label_smoothing_penalizes_certainty():
    y_true = np.eye(2, dtype="float32")[[1]]
    certain = np.array([[0.0, 1.0]], dtype="float32")
    assert float(FocalLoss(gamma=0.0, label_smoothing=0.0)(y_true, certain)) < 1e-5
    assert float(FocalLoss(gamma=0.0, label_smoothing=0.2)(y_true, certain)) > 0.1


def test_focal_loss_serializes_and_rejects_bad_values():
    loss = FocalLoss(gamma=2.5, alpha=0.3, label_smoothing=0.05)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, FocalLoss)
    assert (again.gamma, again.alpha, again.label_smoothing) == (2.5, 0.3, 0.05)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.0)


def test_alpha_from_labels():
    assert alpha_from_labels([0, 0, 0, 1]) == pytest.approx(0.75)
    assert alpha_from_labels([0, 1]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        alpha_from_labels([1, 1, 1])


# --- learning-rate schedule ----------------------------------------------------------------------


def test_warmup_cosine_rises_peaks_and_decays():
    schedule = WarmupCosine(peak_lr=1e-3, warmup_steps=10, total_steps=100)
    lr = np.array([float(schedule(step)) for step in range(130)])
    np.testing.assert_allclose(np.diff(lr[:10]), 1e-4, rtol=1e-4)  # linear rise
    assert lr[0] == pytest.approx(1e-4)
    assert lr.max() == pytest.approx(1e-3)
    assert lr[9] == pytest.approx(1e-3) and lr[10] == pytest.approx(1e-3)
    assert np.all(np.diff(lr[10:101]) <= 1e-12)  # monotone decay
    assert lr[55] == pytest.approx(0.5e-3, rel=1e-4)  # half-way through the cosine
    assert lr[100] == pytest.approx(0.0, abs=1e-9) and lr[129] == pytest.approx(0.0, abs=1e-9)


def test_warmup_cosine_without_warmup_starts_at_the_peak_and_serializes():
    schedule = WarmupCosine(2e-3, 0, 50, min_lr=1e-5)
    assert float(schedule(0)) == pytest.approx(2e-3)
    assert float(schedule(50)) == pytest.approx(1e-5)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, WarmupCosine) and again.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(1e-3, 20, 10)


# --- per-class monitor --------------------------------------------------------------------------


def sign_model(t=4, d=3):
    """Predicts violent iff the time-mean of feature 0 is positive."""
    inputs = keras.Input((t, d))
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(keras.layers.GlobalAveragePooling1D()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((d, 2), dtype="float32")
    kernel[0] = [-5.0, 5.0]
    dense.set_weights([kernel, np.zeros(2, dtype="float32")])
    return model


def test_training_and_prediction_read_through_pipelines_without_autotuning(monkeypatch):
    """TensorFlow's autotuner makes the deletion of an iterator (the end of every fit and predict) wait out the
    tuner's sleep with the CPU idle (up to seconds): the library's pipelines switch it off, and predict the same
    numbers as Keras' own pipeline for arrays, in the same batches."""
    from nexara_lib.training import arrays, run_steps

    training_set = run_steps.TrainingSet(np.zeros((10, 4, 3), np.float32), np.arange(10) % 2, 0.5, {}, 0.0)
    assert run_steps.epoch_batches(training_set, 0, 4, 0, 2).options().autotune.enabled is False

    model = sign_model()
    x = np.random.default_rng(0).normal(size=(300, 4, 3)).astype(np.float32)
    expected = model.predict(x, batch_size=256, verbose=0)
    fed = []
    keras_predict = model.predict
    monkeypatch.setattr(model, "predict", lambda data, **kw: fed.append(data) or keras_predict(data, **kw))
    np.testing.assert_array_equal(arrays.predict_class_probabilities(model, x), expected)
    assert fed[0].options().autotune.enabled is False
    assert [len(batch) for batch in fed[0]] == [256, 44]


def monitor_case(wrong_nonviolent, n=10, t=4, d=3):
    """n non-violent and n violent clips; `wrong_nonviolent` of the non-violent ones look violent."""
    y = np.array([0] * n + [1] * n)
    x = np.zeros((2 * n, t, d), dtype="float32")
    x[:, :, 0] = np.where(y == 1, 1.0, -1.0)[:, None]
    x[:wrong_nonviolent, :, 0] = 0.5
    x[:, :, 1] = np.linspace(-1, 1, 2 * n)[:, None]  # irrelevant feature
    return x, y


@pytest.mark.parametrize("wrong, level, gap", [(2, logging.WARNING, 0.2), (5, logging.CRITICAL, 0.5), (0, None, 0.0)])
def test_per_class_monitor_logs_the_gap(wrong, level, gap, caplog, capsys):
    x, y = monitor_case(wrong)
    model = sign_model()
    monitor = PerClassMonitor(x, y, gap_warning=0.15, gap_critical=0.25, verbose=1)
    monitor.set_model(model)
    logs = {}
    with caplog.at_level(logging.INFO, logger="nexara.training"):
        monitor.on_epoch_end(0, logs)
    assert logs["val_acc_nonviolent"] == pytest.approx(1 - wrong / 10)
    assert logs["val_acc_violent"] == pytest.approx(1.0)
    assert logs["val_class_gap"] == pytest.approx(gap)
    assert logs["val_balanced_accuracy"] == pytest.approx(1 - wrong / 20)
    probs = model.predict(x, verbose=0)[:, 1]
    assert logs["val_auc"] == pytest.approx(roc_auc_score(y, probs))
    levels = [r.levelno for r in caplog.records if r.name == "nexara.training" and r.levelno >= logging.WARNING]
    assert levels == ([level] if level else [])
    printed = capsys.readouterr().out
    assert ("CRITICAL" in printed) == (level == logging.CRITICAL)
    assert ("WARNING" in printed) == (level == logging.WARNING)
    assert monitor.records[0]["gap_status"] == {logging.WARNING: "warning", logging.CRITICAL: "critical"}.get(
        level, "ok"
    )


def test_per_class_monitor_needs_both_classes():
    x, y = monitor_case(0)
    with pytest.raises(ValueError, match="validation"):
        PerClassMonitor(x[y == 1], y[y == 1])


def test_monitor_mode():
    assert monitor_mode("val_loss") == "min"
    assert monitor_mode("val_class_gap") == "min"
    for name in ("val_accuracy", "val_auc", "val_balanced_accuracy", "val_acc_violent"):
        assert monitor_mode(name) == "max"
    with pytest.raises(ValueError, match="monitor"):
        monitor_mode("val_throughput")


def test_set_seed_repeats_random_draws():
    runtime.set_seed(5)
    first = (np.random.rand(3), keras.random.uniform((3,)).numpy())
    runtime.set_seed(5)
    second = (np.random.rand(3), keras.random.uniform((3,)).numpy())
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    with pytest.raises(ValueError, match="seed"):
        runtime.set_seed(-1)


# --- training loop ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.mixed_precision.set_global_policy("float32")
    out_dir = tmp_path_factory.mktemp("train")
    x_train, y_train = burst_clips(80, seed=0)
    x_val, y_val = burst_clips(40, seed=1)
    results = training.train_sequence_model(x_train, y_train, x_val, y_val, TINY_CONFIG, out_dir, verbose=0)
    return results, out_dir, x_val, y_val


def test_training_learns_the_burst(trained):
    results, *_ = trained
    assert results["best_metrics"]["val_balanced_accuracy"] >= 0.85
    assert results["final_val_metrics"]["balanced_accuracy"] >= 0.85
    # the returned model holds the best epoch's weights, not the last epoch's
    for key in ("acc_nonviolent", "acc_violent", "balanced_accuracy", "auc"):
        assert results["final_val_metrics"][key] == pytest.approx(results["best_metrics"][f"val_{key}"], abs=1e-6)


def test_training_writes_its_artifacts(trained):
    results, out_dir, x_val, _ = trained
    # the checkpoint folder is gone once the run is complete
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "history.csv",
        "model.keras",
        "tensorboard",
        "training_results.json",
    ]
    saved = json.loads((out_dir / "training_results.json").read_text())
    history = pd.read_csv(out_dir / "history.csv")
    assert len(history) == saved["epochs_run"] == results["epochs_run"] <= TINY_CONFIG["epochs"]
    for column in ("loss", "val_loss", "accuracy", "val_accuracy", *PER_CLASS_LOG_KEYS, "learning_rate"):
        assert column in history
    best = saved["best_epoch"]
    monitor = saved["monitor"]
    assert monitor == TINY_CONFIG["early_stopping_monitor"] == "val_loss"  # the schema default
    assert history[monitor].idxmin() + 1 == best  # restored weights are the best validation epoch
    assert saved["best_metrics"][monitor] == pytest.approx(history[monitor][best - 1])
    assert saved["model"] == "hybrid" and saved["model_params"]["lstm_units"] == 8
    assert saved["monitor_mode"] == "min" and saved["seed"] == 7
    assert saved["training_params"]["augment_factor"] == 2 and "backbone" not in saved["training_params"]
    assert saved["data"]["train_size"] == 80 and saved["data"]["train_size_augmented"] == 160
    assert saved["data"]["train_class_counts_augmented"] == {"non-violent": 80, "violent": 80}
    assert saved["data"]["val_size"] == 40
    assert saved["focal_alpha_used"] == pytest.approx(0.5)
    assert saved["timings"]["seconds_per_epoch"] > 0 and saved["timings"]["fit_seconds"] > 0

    reloaded = keras.models.load_model(out_dir / "model.keras", safe_mode=True)
    np.testing.assert_allclose(
        training.predict_proba(reloaded, x_val), training.predict_proba(results["model"], x_val), atol=1e-6
    )
    assert isinstance(load_sequence_model(out_dir / "model.keras").loss, FocalLoss)


def test_plot_training_history(trained):
    results, out_dir, *_ = trained
    history = pd.read_csv(out_dir / "history.csv")
    fig = plot_training_history(history, 0.15, 0.25, best_epoch=results["best_epoch"])
    assert len(fig.axes) == 4
    gap_ax = fig.axes[3]
    levels = {round(float(line.get_ydata()[0]), 4) for line in gap_ax.lines if len(set(line.get_ydata())) == 1}
    assert {0.15, 0.25} <= levels
    assert any(line.get_label() == "violent" for line in fig.axes[2].lines)
    with pytest.raises(ValueError, match="loss"):
        plot_training_history(pd.DataFrame({"accuracy": [0.5]}))


def test_predict_proba_checks_shapes(trained):
    results, _, x_val, _ = trained
    probs = training.predict_proba(results["model"], x_val)
    assert probs.shape == (len(x_val),) and np.all((probs >= 0) & (probs <= 1))
    with pytest.raises(ValueError, match="expects clips"):
        training.predict_proba(results["model"], x_val[:, :, :4])


@pytest.mark.slow
def test_same_seed_same_history(tmp_path):
    x_train, y_train = burst_clips(40, seed=2)
    x_val, y_val = burst_clips(20, seed=3)
    config = {**TINY_CONFIG, "model": "conv1d_lstm", "epochs": 2, "warmup_epochs": 1}
    runs = [
        training.train_sequence_model(
            x_train, y_train, x_val, y_val, config, tmp_path / f"run{i}", seed=seed, verbose=0
        )["history"].drop(columns="epoch_seconds")
        for i, seed in enumerate([11, 11, 12])
    ]
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)
    assert not runs[0].equals(runs[2]), "a different seed gave the very same history: the seed is not used"


@pytest.mark.slow
def test_training_options_are_applied(tmp_path):
    x_train, y_train = burst_clips(40, seed=4, violent_fraction=0.25)
    x_val, y_val = burst_clips(20, seed=5)
    config = {
        **TINY_CONFIG,
        "model": "bigru",
        "epochs": 1,
        "warmup_epochs": 0,
        "augment_factor": 1,
        "optimizer": "adamw",
        "class_weights": True,
        "label_smoothing": 0.1,
        "early_stopping_monitor": "val_loss",
        "mixed_precision": "on",
    }
    results = training.train_sequence_model(x_train, y_train, x_val, y_val, config, tmp_path, verbose=0)
    assert results["precision_policy"] == "mixed_float16"
    reloaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.get_layer("compression").compute_dtype == "float16"
    np.testing.assert_allclose(
        training.predict_proba(reloaded, x_val), training.predict_proba(results["model"], x_val), atol=1e-6
    )
    assert results["focal_alpha_used"] == pytest.approx(0.75)  # 30 non-violent, 10 violent, no balancing
    assert results["class_weight_used"] == {"0": pytest.approx(40 / 60), "1": pytest.approx(2.0)}
    assert results["monitor_mode"] == "min"
    assert results["training_keys_unused_by_model"] == ["pooled_hidden_units"]  # pooled_mlp's width
    assert results["fit"] == "keras" and "pooled_c_grid" in results["training_keys_unused_by_fit"]
    optimizer = results["model"].optimizer  # wrapped for loss scaling under mixed precision
    assert type(optimizer).__name__ == "LossScaleOptimizer"
    assert type(optimizer.inner_optimizer).__name__ == "AdamW"
    assert results["model"].loss.label_smoothing == pytest.approx(0.1)


def test_nan_loss_stops_training_with_a_clear_error(tmp_path):
    x_train, y_train = burst_clips(32, seed=6)
    x_val, y_val = burst_clips(16, seed=7)
    # finite inputs (they are standardised first), but a learning rate this absurd blows the weights up
    config = {
        **TINY_CONFIG,
        "model": "conv1d_lstm",
        "epochs": 3,
        "warmup_epochs": 0,
        "augment_factor": 1,
        "learning_rate": 1e30,
        "gradient_clip_norm": 0.0,
        "optimizer": "sgd",
    }
    with pytest.raises(training.TrainingDivergedError, match="NaN"):
        training.train_sequence_model(x_train, y_train, x_val, y_val, config, tmp_path, verbose=0)
    assert (tmp_path / "history.csv").exists()
    assert not (tmp_path / "model.keras").exists()


# --- input checks (fail before any training) ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_data():
    return burst_clips(20, seed=8) + burst_clips(10, seed=9)


def test_missing_class_in_validation_names_the_split(small_data, tmp_path):
    x_train, y_train, x_val, y_val = small_data
    with pytest.raises(ValueError, match="validation split has no violent"):
        training.train_sequence_model(x_train, y_train, x_val[y_val == 0], y_val[y_val == 0], TINY_CONFIG, tmp_path)
    with pytest.raises(ValueError, match="training split has no non-violent"):
        training.train_sequence_model(x_train[y_train == 1], y_train[y_train == 1], x_val, y_val, TINY_CONFIG, tmp_path)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.update(y_train=d["y_train"] + 1), "labels must be 0"),
        (lambda d: d.update(x_val=d["x_val"][:, :, :3]), "same backbone"),
        (lambda d: d.update(x_train=d["x_train"][:, :, 0]), r"\(N, T, D\)"),
        (lambda d: d.update(y_train=d["y_train"][:5]), "labels must have shape"),
    ],
)
def test_bad_arrays_are_rejected(small_data, tmp_path, change, match):
    arrays = dict(zip(["x_train", "y_train", "x_val", "y_val"], small_data, strict=True))
    change(arrays)
    with pytest.raises(ValueError, match=match):
        training.train_sequence_model(config=TINY_CONFIG, out_dir=tmp_path, **arrays)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("dropout", "high", "dropout"),
        ("model", "resnet", "model"),
        ("early_stopping_monitor", "loss", "monitor"),
        ("warmup_epochs", 50, "warmup_epochs"),
        ("optimizer", "rmsprop", "optimizer"),
        ("focal_alpha", 1.5, "focal_alpha"),
        ("gap_warning", 0.5, "gap_warning"),
        # ranges come from the schema: the message names the key, where it came from and the range
        ("dropout", 1.0, r"'dropout' \(from training config\): must be in \[0, 1\), got 1.0"),
        ("learning_rate", 0.0, r"'learning_rate' \(from training config\): must be > 0"),
    ],
)
def test_bad_config_values_are_rejected(small_data, tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        training.train_sequence_model(*small_data, {**TINY_CONFIG, key: value}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_input_standardisation_uses_training_statistics_and_is_saved(tmp_path):
    model = models.create_sequence_model(
        "bilstm", (6, 5), dense_units=8, lstm_units=4, lstm_units_last=4, attention_units=4, head_units=[4, 4]
    )
    rng = np.random.default_rng(0)
    x_train = (rng.normal(size=(30, 6, 5)) * 40 + 200).astype(np.float32)  # raw, badly scaled features
    models.adapt_input_normalization(model, x_train)
    layer = model.get_layer(models.INPUT_NORMALIZATION_NAME)
    standardised = np.asarray(layer(x_train)).reshape(-1, 5)
    np.testing.assert_allclose(standardised.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(axis=0), 1, atol=1e-3)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(
        training.predict_proba(reloaded, x_train), training.predict_proba(model, x_train), atol=1e-6
    )
