"""Ensemble weights, stacking, diversity and the saved artifact on synthetic member predictions."""

import json

import numpy as np
import pytest

from nexara_lib.evaluation import ensemble as en
from nexara_lib.evaluation.metrics import log_loss
from nexara_lib.evaluation.predictions import Predictions


def _members(split, n=300, seed=0):
    # member 0 is informative, members 1 and 2 are close to coin flips.
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    probs = [
        np.clip(0.5 + 0.7 * (y - 0.5) + rng.normal(0, 0.12, n), 0.01, 0.99),
        np.clip(0.5 + 0.05 * (y - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99),
        np.clip(0.5 + rng.normal(0, 0.2, n), 0.01, 0.99),
    ]
    return [Predictions(split, y, p) for p in probs]


VAL = _members("val")


def test_weights_on_simplex_and_favor_informative_member():
    w = en.fit_ensemble_weights(VAL)
    assert w.shape == (3,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w[0] > 0.8
    probs = np.stack([m.prob for m in VAL])
    y = VAL[0].y_true
    assert log_loss(y, en.ensemble_predict(probs, w)) <= log_loss(y, probs.mean(0)) + 1e-12


def test_single_member_gets_all_weight():
    assert en.fit_ensemble_weights(VAL[:1]).tolist() == [1.0]


def test_choosers_refuse_non_validation_predictions():
    test = _members("test")
    for chooser in (en.fit_ensemble_weights, en.fit_stacking, en.choose_best_member):
        with pytest.raises(ValueError, match="validation split, got 'test'"):
            chooser(test)
    mixed = [VAL[0], test[1]]
    with pytest.raises(ValueError, match="validation split"):
        en.fit_ensemble_weights(mixed)


def test_members_must_share_clips():
    other = Predictions("val", 1 - VAL[1].y_true, VAL[1].prob)
    with pytest.raises(ValueError, match="same clips"):
        en.fit_ensemble_weights([VAL[0], other])


def test_ensemble_predict_checks_weights():
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert en.ensemble_predict(probs, [0.75, 0.25]) == pytest.approx([0.3, 0.7])
    with pytest.raises(ValueError, match="sum to 1"):
        en.ensemble_predict(probs, [0.5, 0.6])
    with pytest.raises(ValueError, match="one entry per member"):
        en.ensemble_predict(probs, [1.0])


def test_stacking_reports_out_of_fold_predictions():
    result = en.fit_stacking(VAL, n_splits=5, seed=0)
    assert result.oof_prob.shape == (300,)
    assert result.oof_metrics["balanced_accuracy"] > 0.85
    assert abs(result.model.coef_[0][0]) > abs(result.model.coef_[0][2])
    probs = np.stack([m.prob for m in VAL])
    in_sample = en.stacking_predict(result.model, probs)
    assert not np.allclose(in_sample, result.oof_prob)  # out-of-fold is not the in-sample fit
    with pytest.raises(ValueError, match="n_splits"):
        en.fit_stacking([Predictions("val", [0, 1, 1], [0.1, 0.8, 0.7])] * 2, n_splits=5)


def test_choose_best_member():
    assert en.choose_best_member(VAL, "balanced_accuracy") == 0
    assert en.choose_best_member(VAL, "log_loss") == 0  # lower-is-better metrics are minimized
    assert en.choose_best_member(list(reversed(VAL)), "roc_auc") == 2


def test_pairwise_disagreement_and_error_correlation():
    y = np.array([0, 1, 1, 0, 1, 0])
    preds = np.array(
        [
            [0, 1, 1, 0, 1, 0],  # never wrong
            [0, 0, 1, 0, 0, 0],  # wrong on clips 1, 4
            [1, 0, 1, 0, 1, 0],
        ]
    )  # wrong on clips 0, 1
    d = en.pairwise_disagreement(preds)
    assert d.shape == (3, 3) and np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert d[0, 1] == pytest.approx(2 / 6) and d[1, 2] == pytest.approx(2 / 6)
    corr = en.error_correlation(y, preds)
    # member 0 has constant errors -> undefined correlation, reported as NaN
    assert np.isnan(corr[0, 1]) and np.allclose(np.diag(corr), 1)
    errors_1, errors_2 = (preds[1] != y).astype(float), (preds[2] != y).astype(float)
    assert corr[1, 2] == pytest.approx(np.corrcoef(errors_1, errors_2)[0, 1])
    assert corr[1, 2] == pytest.approx(0.25)  # they share one of their two errors
    with pytest.raises(ValueError, match="only 0"):
        en.pairwise_disagreement(np.array([[0.2, 0.7]]))


def test_artifact_roundtrip_and_predict(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    paths = [str(models / f"m{i}.keras") for i in range(2)]
    artifact = en.EnsembleArtifact(paths, threshold=0.4, weights=(0.25, 0.75), metadata={"backbone": "vgg19"})
    artifact.save(tmp_path / "ensemble.json")
    stored = json.loads((tmp_path / "ensemble.json").read_text())
    assert stored["member_paths"] == ["models/m0.keras", "models/m1.keras"]  # relative: the run folder can move
    loaded = en.EnsembleArtifact.load(tmp_path / "ensemble.json")
    assert loaded == artifact

    scale = {paths[0]: 0.2, paths[1]: 0.6}

    def member_predict(path, features):  # stands in for loading a model and scoring
        return np.full(len(features), scale[path])

    prob, pred = loaded.predict([np.zeros((3, 5, 4)), np.zeros((3, 5, 8))], member_predict)
    assert prob == pytest.approx([0.5, 0.5, 0.5]) and pred.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="one feature array per member"):
        loaded.predict([np.zeros((3, 5, 4))], member_predict)


def test_artifact_from_stacking_matches_model(tmp_path):
    result = en.fit_stacking(VAL, n_splits=3)
    artifact = en.EnsembleArtifact.from_stacking(["a.keras", "b.keras", "c.keras"], result.model, threshold=0.5)
    artifact.save(tmp_path / "stack.json")
    loaded = en.EnsembleArtifact.load(tmp_path / "stack.json")
    probs = np.stack([m.prob for m in VAL])
    assert loaded.combine(probs) == pytest.approx(en.stacking_predict(result.model, probs))


def test_artifact_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        en.EnsembleArtifact(["a", "b"], threshold=0.5, weights=(0.5, 0.6))
    with pytest.raises(ValueError, match="2 weights"):
        en.EnsembleArtifact(["a", "b"], threshold=0.5, weights=(1.0,))
    with pytest.raises(ValueError, match="method"):
        en.EnsembleArtifact(["a"], threshold=0.5, method="vote", weights=(1.0,))


def test_compare_with_best_member():
    test = _members("test", seed=1)
    probs = np.stack([m.prob for m in test])
    w = en.fit_ensemble_weights(VAL)
    r = en.compare_with_best_member(test[0].y_true, test[0].prob, en.ensemble_predict(probs, w), n_bootstrap=50)
    assert set(r) >= {"best_member", "ensemble", "delta", "mcnemar", "accuracy_diff_ci"}


def test_a_member_is_reused_only_for_the_same_clips_and_features():
    """The trained-member fingerprint covers the data: changed features or clips retrain the member."""
    from nexara_lib.config import SCHEMA
    from nexara_lib.features.stream_set import StreamSet
    from nexara_lib.stages.data import FeatureSplit
    from nexara_lib.stages.ensemble import _fingerprint

    params = {key: spec.default for key, spec in SCHEMA.items()} | {"backbone": "flow", "backbone_weights": "none"}
    streams = StreamSet.from_params(params)
    rng = np.random.default_rng(0)

    def splits(x_train, ids=("a", "b")):
        return {
            "train": FeatureSplit("train", x_train, np.array([0, 1]), list(ids)),
            "val": FeatureSplit("val", np.ones((1, 3, 2), np.float32), np.array([1]), ["c"]),
        }

    x = rng.normal(size=(2, 3, 2)).astype(np.float32)
    same = _fingerprint(params, streams, splits(x))
    assert same == _fingerprint(params, streams, splits(x.copy()))
    assert same != _fingerprint(params, streams, splits(x + 1))
    assert same != _fingerprint(params, streams, splits(x, ("a", "d")))
    assert same != _fingerprint({**params, "seed": 7}, streams, splits(x))
