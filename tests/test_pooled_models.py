"""The pooled baselines (issue #12): temporal pooling, the closed-form pooled_linear fit (C chosen on validation,
the saved model reproducing scikit-learn), pooled_mlp through the Keras loop, and both as ordinary members of
prediction, TTA and ensembles."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from nexara_lib.config import SCHEMA, ParamError
from nexara_lib.evaluation.ensemble import EnsembleArtifact, fit_ensemble_weights
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.tta import aggregate
from nexara_lib.training import models, pooled
from nexara_lib.training import train as training
from nexara_lib.training.layers import ATTENTION_LAYER_NAME, attention_model
from nexara_lib.training.losses import FocalLoss, alpha_from_labels
from nexara_lib.training.model_files import load_sequence_model, save_model_atomic
from nexara_lib.training.monitor import PER_CLASS_LOG_KEYS
from nexara_lib.transforms.registry import get_transform

T, D = 6, 4
GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
BASE = {**{k: p.default for k, p in SCHEMA.items()}, "tensorboard": False, "seed": 3}
LINEAR = {**BASE, "model": "pooled_linear", "pooled_c_grid": GRID}
MLP = {
    **BASE,
    "model": "pooled_mlp",
    "pooled_hidden_units": 8,
    "dropout": 0.1,
    "epochs": 30,
    "warmup_epochs": 2,
    "batch_size": 16,
    "early_stopping_patience": 10,
    "augment_factor": 1,
    "learning_rate": 1e-2,
}
TINY_HYBRID = {"dense_units": 8, "lstm_units": 4, "lstm_units_last": 4, "attention_units": 4, "head_units": [4]}


def motion_clips(n, seed, noise=1.0):
    """Violent clips flicker on feature 0 (large |x[t+1] - x[t]|, same mean): only the pooled motion and spread
    separate the classes, the frame mean does not."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(scale=noise, size=(n, T, D)).astype(np.float32) + 5.0  # raw, off-centre features
    x[y == 1, :, 0] += np.where(np.arange(T) % 2 == 0, 2.0, -2.0).astype(np.float32)
    order = rng.permutation(n)
    return x[order], y[order]


def pooled_numpy(x):
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.mean(1), x.std(1), np.abs(np.diff(x, axis=1)).mean(1)], axis=-1)


pytestmark = pytest.mark.usefixtures("float32_policy")


@pytest.fixture(scope="module")
def data():
    return motion_clips(60, 1) + motion_clips(40, 2) + motion_clips(30, 3)  # train, val, test


def _trained(config, data, tmp_path_factory):
    keras.mixed_precision.set_global_policy("float32")
    out_dir = tmp_path_factory.mktemp(config["model"])
    x_train, y_train, x_val, y_val, *_ = data
    return training.train_sequence_model(x_train, y_train, x_val, y_val, config, out_dir, verbose=0), out_dir


@pytest.fixture(scope="module")
def linear(data, tmp_path_factory):
    return _trained(LINEAR, data, tmp_path_factory)


@pytest.fixture(scope="module")
def mlp(data, tmp_path_factory):
    return _trained(MLP, data, tmp_path_factory)


# --- the pooling layer --------------------------------------------------------------------


def test_temporal_pooling_is_mean_std_and_mean_abs_difference():
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    out = keras.ops.convert_to_numpy(pooled.TemporalPooling()(x))
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out, pooled_numpy(x), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 time steps"):
        pooled.TemporalPooling()(np.zeros((2, 1, 3), np.float32))
    with pytest.raises(ValueError, match="at least 2 frames"):
        models.create_sequence_model("pooled_linear", (1, D))


# --- pooled_linear: the closed-form fit ------------------------------------------------------------


def test_pooled_linear_separates_what_the_frame_mean_cannot(data, linear):
    result, _ = linear
    *_, x_test, y_test = data
    assert result["final_val_metrics"]["balanced_accuracy"] >= 0.95
    prob = training.predict_proba(result["model"], x_test)
    assert np.mean((prob >= 0.5) == y_test) >= 0.95
    # the same regression on the frame mean alone is near chance: the motion statistic does the work
    x_train, y_train = data[0], data[1]
    mean_only = LogisticRegression(C=1.0).fit(x_train.mean(1), y_train)
    assert mean_only.score(x_test.mean(1), y_test) < 0.8


def test_pooled_linear_writes_the_same_artifacts_and_keys(linear, data):
    result, out_dir = linear
    assert sorted(p.name for p in out_dir.iterdir()) == ["history.csv", "model.keras", "training_results.json"]
    saved = json.loads((out_dir / "training_results.json").read_text())
    history = pd.read_csv(out_dir / "history.csv")
    # one history row per C, ascending; the columns the history plot and the study read
    assert history["C"].tolist() == GRID and history["epoch"].tolist() == [1, 2, 3, 4, 5]
    for column in ("loss", "val_loss", "accuracy", "val_accuracy", *PER_CLASS_LOG_KEYS, "epoch_seconds"):
        assert column in history
    assert saved["fit"] == "closed_form" and saved["stop_reason"] == "closed_form"
    assert saved["epochs_run"] == len(GRID) and not saved["stopped_early"]
    assert set(saved["best_metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy", *PER_CLASS_LOG_KEYS}
    best = saved["best_epoch"]
    assert history["val_loss"].idxmin() + 1 == best  # early_stopping_monitor (val_loss) picks C
    closed = saved["closed_form"]
    assert closed["c_grid"] == GRID and closed["chosen_c"] == GRID[best - 1]
    assert [s["C"] for s in closed["scores"]] == GRID and all("val_loss" in s for s in closed["scores"])
    assert closed["class_weight"] == {"0": pytest.approx(1.0), "1": pytest.approx(1.0)}  # balanced data
    assert (
        "learning_rate" in saved["training_keys_unused_by_fit"]
        and "pooled_c_grid" not in saved["training_keys_unused_by_fit"]
    )
    for key in ("acc_nonviolent", "acc_violent", "balanced_accuracy", "auc"):
        assert saved["final_val_metrics"][key] == pytest.approx(saved["best_metrics"][f"val_{key}"], abs=1e-5)
    assert saved["data"]["train_size_augmented"] == saved["data"]["train_size"] == 60  # never augmented
    assert saved["timings"]["seconds_per_epoch"] > 0 and saved["artifacts"]["tensorboard"] is None


def test_saved_pooled_linear_reproduces_sklearn(linear, data):
    result, out_dir = linear
    x_train, y_train, x_val, *_ = data
    reloaded = load_sequence_model(out_dir / "model.keras")  # Keras safe mode
    assert type(reloaded.get_layer("temporal_pooling")) is pooled.TemporalPooling
    # an independent NumPy pipeline: pooled statistics, standardised with the training split's own
    z_train, z_val = pooled_numpy(x_train), pooled_numpy(x_val)
    mean, std = z_train.mean(0), z_train.std(0)
    np.testing.assert_allclose(pooled.standardised_features(reloaded, x_val), (z_val - mean) / std, atol=1e-4)
    # sklearn with the chosen C on what the softmax sees ('auto' focal alpha = class_weight 'balanced')
    chosen = result["closed_form"]["chosen_c"]
    clf = LogisticRegression(C=chosen, class_weight="balanced", max_iter=5000).fit(
        pooled.standardised_features(reloaded, x_train), y_train
    )
    expected = clf.predict_proba(pooled.standardised_features(reloaded, x_val))[:, 1]
    np.testing.assert_allclose(training.predict_proba(reloaded, x_val), expected, atol=1e-5)
    np.testing.assert_allclose(training.predict_proba(result["model"], x_val), expected, atol=1e-5)
    plain = keras.models.load_model(out_dir / "model.keras", safe_mode=True)
    np.testing.assert_allclose(training.predict_proba(plain, x_val), expected, atol=1e-5)


def test_c_is_chosen_on_the_validation_split_only(data, tmp_path, monkeypatch):
    x_train, y_train, x_val, y_val, *_ = data
    fitted_sizes = []
    original_fit = LogisticRegression.fit

    def spy(self, X, y, *args, **kwargs):
        fitted_sizes.append(len(X))
        return original_fit(self, X, y, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    honest = training.train_sequence_model(x_train, y_train, x_val, y_val, LINEAR, tmp_path / "a", verbose=0)
    # validation labels flipped: the fits are the same, only the choice changes (to the most regularised C,
    # whose probabilities are nearest 0.5, the least wrong on flipped labels)
    flipped = training.train_sequence_model(x_train, y_train, x_val, 1 - y_val, LINEAR, tmp_path / "b", verbose=0)
    assert fitted_sizes == [len(x_train)] * (2 * len(GRID))  # every regression sees the training clips only
    pd.testing.assert_series_equal(honest["history"]["loss"], flipped["history"]["loss"])
    assert flipped["closed_form"]["chosen_c"] == GRID[0] < honest["closed_form"]["chosen_c"]
    # the selection metric is the recipe's early_stopping_monitor
    by_auc = training.train_sequence_model(
        x_train, y_train, x_val, y_val, {**LINEAR, "early_stopping_monitor": "val_auc"}, tmp_path / "c", verbose=0
    )
    assert by_auc["closed_form"]["selection_metric"] == "val_auc"
    assert by_auc["best_epoch"] == int(np.argmax(by_auc["history"]["val_auc"].to_numpy())) + 1


def test_class_weights_follow_the_recipe():
    y = np.array([0] * 30 + [1] * 10)
    balanced = pooled.recipe_class_weights(y, alpha_from_labels(y), None)
    assert balanced == {0: pytest.approx(40 / 60), 1: pytest.approx(40 / 20)}  # sklearn's 'balanced'
    assert pooled.recipe_class_weights(y, 0.5, None) == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    both = pooled.recipe_class_weights(y, 0.5, {0: 40 / 60, 1: 2.0})
    assert both[1] / both[0] == pytest.approx(3.0)
    assert sum(both[c] * np.sum(y == c) for c in (0, 1)) / len(y) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "grid, error, match",
    [
        ([], ValueError, "pooled_c_grid must be a non-empty list"),
        ([0.0, 1.0], ParamError, r"'pooled_c_grid' \(from training config\): every item must be > 0"),
    ],
)
def test_bad_c_grids_are_rejected(data, tmp_path, grid, error, match):
    x_train, y_train, x_val, y_val, *_ = data
    with pytest.raises(error, match=match):
        training.train_sequence_model(x_train, y_train, x_val, y_val, {**LINEAR, "pooled_c_grid": grid}, tmp_path)
    assert not any(tmp_path.iterdir())


# --- pooled_mlp: the Keras loop ------------------------------------------------------------------


def test_pooled_mlp_trains_like_a_sequence_model_and_reloads(mlp, data):
    result, out_dir = mlp
    x_val = data[2]
    assert result["fit"] == "keras" and result["closed_form"] is None
    assert result["model_params"] == {"pooled_hidden_units": 8, "dropout": 0.1, "l2": SCHEMA["l2"].default}
    assert result["final_val_metrics"]["balanced_accuracy"] >= 0.85
    assert result["stop_reason"] in ("early_stopping", "max_epochs")
    history = pd.read_csv(out_dir / "history.csv")
    assert len(history) == result["epochs_run"] and "learning_rate" in history
    reloaded = load_sequence_model(out_dir / "model.keras")
    assert isinstance(reloaded.loss, FocalLoss)
    assert reloaded.get_layer("hidden").units == 8
    np.testing.assert_allclose(
        training.predict_proba(reloaded, x_val), training.predict_proba(result["model"], x_val), atol=1e-6
    )


# --- as members of everything else -----------------------------------------------------------------


def test_pooled_models_have_no_attention_so_the_gallery_falls_back(linear, mlp):
    for result, _ in (linear, mlp):
        with pytest.raises(ValueError, match=ATTENTION_LAYER_NAME):  # misclassified_gallery catches this
            attention_model(result["model"])


def test_pooled_models_take_feature_tta_views(linear, mlp, data):
    x_train, _, x_val, *_ = data
    view = get_transform("feature_shift")
    shifted = view.apply(x_val, view.view_params(seed=0), feature_std=x_train.reshape(-1, D).std(0))
    for result, _ in (linear, mlp):
        probs = np.stack(
            [training.predict_proba(result["model"], x_val), training.predict_proba(result["model"], shifted)]
        )
        combined = aggregate(probs, "mean_logit")
        assert combined.shape == (len(x_val),) and np.all((combined > 0) & (combined < 1))


def test_an_ensemble_combines_a_pooled_model_with_a_hybrid(linear, data, tmp_path):
    x_train, _, x_val, y_val, x_test, _ = data
    _, linear_dir = linear
    # a tiny hybrid as saved by training (its weights do not matter to the combination)
    hybrid = models.create_sequence_model("hybrid", (T, D), **TINY_HYBRID)
    models.adapt_input_normalization(hybrid, x_train)
    save_model_atomic(hybrid, tmp_path / "hybrid.keras")
    paths = [str(linear_dir / "model.keras"), str(tmp_path / "hybrid.keras")]
    members = [load_sequence_model(p) for p in paths]
    weights = fit_ensemble_weights([Predictions("val", y_val, training.predict_proba(m, x_val)) for m in members])
    artifact = EnsembleArtifact(tuple(paths), 0.5, "weighted", weights=tuple(weights))
    artifact.save(tmp_path / "ensemble.json")
    loaded = EnsembleArtifact.load(tmp_path / "ensemble.json")
    prob, labels = loaded.predict(
        [x_test, x_test], lambda path, x: training.predict_proba(load_sequence_model(path), x)
    )
    expected = weights @ np.stack([training.predict_proba(m, x_test) for m in members])
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert labels.shape == (len(x_test),)
