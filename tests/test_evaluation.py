"""Metrics, CIs, paired tests, thresholds and calibration on tiny hand-made inputs."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from nexara_lib.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)
from nexara_lib.evaluation.metrics import binary_metrics, metric_function, roc_auc
from nexara_lib.evaluation.predictions import Predictions, sigmoid
from nexara_lib.evaluation.stats import (
    bootstrap_ci,
    compare_paired,
    describe_comparison,
    mcnemar_test,
    paired_bootstrap_diff,
)
from nexara_lib.evaluation.thresholds import candidate_thresholds, choose_threshold
from nexara_lib.io import to_jsonable
from nexara_lib.labels import per_class_accuracy, predict_labels


def test_binary_metrics_hand_computed():
    # tn=2 fp=1 fn=1 tp=3 at threshold 0.5
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.9])
    m = binary_metrics(y, p, 0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (2, 1, 1, 3)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["acc_nonviolent"] == pytest.approx(2 / 3)
    assert m["acc_violent"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["class_gap"] == pytest.approx(3 / 4 - 2 / 3)
    assert m["precision_violent"] == pytest.approx(3 / 4)
    assert m["precision_nonviolent"] == pytest.approx(2 / 3)
    assert m["f1_violent"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["fpr"] == pytest.approx(1 / 3)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    # prob == threshold counts as violent
    assert binary_metrics([0, 1], [0.5, 0.5], 0.5)["fp"] == 1


def test_binary_metrics_share_the_tie_rule_of_labels():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.5, 0.5, 0.49, 0.9])
    assert predict_labels(p, 0.5).tolist() == [0, 1, 1, 0, 1]
    m = binary_metrics(y, p, 0.5)
    assert (m["acc_nonviolent"], m["acc_violent"]) == pytest.approx(per_class_accuracy(y, p, 0.5))
    assert Predictions("val", y, p).pred(0.5).tolist() == predict_labels(p, 0.5).tolist()


def test_roc_auc_with_ties_matches_sklearn_and_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 1)  # many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert math.isnan(roc_auc(np.ones(5, int), np.linspace(0, 1, 5)))


def test_undefined_precision_is_nan_not_zero():
    m = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert m["tp"] == 0 and m["fp"] == 0
    assert math.isnan(m["precision_violent"])
    assert m["recall_violent"] == 0.0


def test_predictions_validation():
    with pytest.raises(ValueError, match="split"):
        Predictions("validation", np.array([0, 1]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="0 .*and 1"):
        Predictions("val", np.array([0, 2]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Predictions("val", np.array([0, 1]), np.array([0.2, 1.3]))
    with pytest.raises(ValueError, match="rows"):
        Predictions("val", np.array([0, 1, 1]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="clip_ids"):
        Predictions("val", np.array([0, 1]), np.array([0.2, 0.8]), clip_ids=("a",))
    preds = Predictions("val", [0, 1], [0.2, 0.8], clip_ids=np.array(["a", "b"]))
    assert preds.clip_ids == ("a", "b")
    with pytest.raises(ValueError):  # read-only arrays
        preds.prob[0] = 0.9


def test_bootstrap_ci_contains_point_and_narrows_with_more_clips():
    rng = np.random.default_rng(1)

    def sample(n):
        y = np.repeat([0, 1], n // 2)
        p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)
        return y, p

    fn = metric_function("accuracy", 0.5)
    y, p = sample(100)
    point, low, high = bootstrap_ci(y, p, fn, n=300, seed=0)
    assert low <= point <= high and low < high
    y_big, p_big = sample(2000)
    _, low_big, high_big = bootstrap_ci(y_big, p_big, fn, n=300, seed=0)
    assert (high_big - low_big) < 0.5 * (high - low)
    # same seed -> same interval
    assert bootstrap_ci(y, p, fn, n=300, seed=0) == (point, low, high)


def test_paired_bootstrap_detects_a_real_improvement():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 150)
    prob_a = np.clip(0.5 + (y - 0.5) * 0.2 + rng.normal(0, 0.3, 300), 0, 1)
    prob_b = np.clip(0.5 + (y - 0.5) * 0.8 + rng.normal(0, 0.1, 300), 0, 1)
    diff, low, high = paired_bootstrap_diff(y, prob_a, prob_b, metric_function("accuracy"), n=300)
    assert low <= diff <= high and low > 0
    # identical systems: the difference is exactly 0 in every resample
    assert paired_bootstrap_diff(y, prob_a, prob_a, metric_function("accuracy"), n=50) == (0.0, 0.0, 0.0)


def test_mcnemar_known_counts():
    y = np.zeros(40, int)
    # a right & b wrong on 10 clips, a wrong & b right on 2, both right elsewhere
    pred_a = np.zeros(40, int)
    pred_b = np.zeros(40, int)
    pred_b[:10] = 1
    pred_a[10:12] = 1
    r = mcnemar_test(y, pred_a, pred_b)
    assert (r["b"], r["c"], r["method"]) == (10, 2, "exact")
    # exact two-sided binomial: 2 * P(X <= 2), X ~ Bin(12, 0.5) = 2 * 79 / 4096
    assert r["p_value"] == pytest.approx(2 * 79 / 4096)
    # large counts: chi-square with continuity correction
    y = np.zeros(100, int)
    pred_a, pred_b = np.zeros(100, int), np.zeros(100, int)
    pred_b[:30] = 1
    pred_a[30:40] = 1
    r = mcnemar_test(y, pred_a, pred_b)
    assert (r["b"], r["c"], r["method"]) == (30, 10, "chi2")
    assert r["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    assert mcnemar_test(y, pred_a, pred_a)["p_value"] == 1.0


def test_choose_threshold_balanced_accuracy_separates_classes():
    val = Predictions("val", [0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.7, 0.9])
    t = choose_threshold(val, "balanced_accuracy")
    assert 0.6 < t <= 0.7
    assert binary_metrics(val.y_true, val.prob, t)["balanced_accuracy"] == 1.0


def test_choose_threshold_respects_max_fpr_on_validation():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 300)
    p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.2, 600), 0, 1)
    val = Predictions("val", y, p)
    for cap in (0.01, 0.03, 0.10):
        t = choose_threshold(val, "max_fpr", max_fpr=cap)
        m = binary_metrics(y, p, t)
        assert m["fpr"] <= cap
        # the next lower candidate threshold would exceed the cap or give no more recall
        lower = candidate_thresholds(p)
        lower = lower[lower < t].max()
        m_lower = binary_metrics(y, p, lower)
        assert m_lower["fpr"] > cap or m_lower["recall_violent"] <= m["recall_violent"]
    assert choose_threshold(val, "max_fpr", max_fpr=0.01) >= choose_threshold(val, "max_fpr", max_fpr=0.10)


def test_choosers_refuse_test_predictions():
    test = Predictions("test", [0, 0, 1, 1], [0.1, 0.4, 0.6, 0.9])
    with pytest.raises(ValueError, match="validation split, got 'test'"):
        choose_threshold(test)
    with pytest.raises(ValueError, match="validation split, got 'test'"):
        choose_threshold(test, "max_fpr")
    with pytest.raises(ValueError, match="validation split, got 'test'"):
        fit_temperature(test)
    with pytest.raises(ValueError, match="Predictions"):
        choose_threshold((np.array([0, 1]), np.array([0.2, 0.8])))


def test_choose_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(Predictions("val", [1, 1], [0.2, 0.8]))


def test_ece_zero_when_perfectly_calibrated_and_positive_otherwise():
    # In each bin the violent fraction equals the predicted probability exactly.
    probs, labels = [], []
    for q, n_pos in ((0.05, 1), (0.25, 5), (0.55, 11), (0.85, 17)):
        probs += [q] * 20
        labels += [1] * n_pos + [0] * (20 - n_pos)
    y, p = np.array(labels), np.array(probs)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    # over-confident: always 0.95 for a 50/50 set -> ECE 0.45
    assert expected_calibration_error(np.repeat([0, 1], 10), np.full(20, 0.95)) == pytest.approx(0.45)
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["count"].sum() == len(y) and np.isnan(curve["mean_prob"][1])


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < sigmoid(z)).astype(int)
    overconfident = sigmoid(3.0 * z)  # logits 3x too large
    temperature = fit_temperature(Predictions("val", y, overconfident))
    assert 2.5 < temperature < 3.5
    scaled = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(y, scaled) < expected_calibration_error(y, overconfident)


def test_metric_function_and_jsonable():
    with pytest.raises(ValueError, match="unknown metric"):
        metric_function("auc")
    assert metric_function("fpr", 0.5)([0, 0, 1], [0.7, 0.2, 0.9]) == 0.5
    out = to_jsonable({"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2)})
    assert out == {"a": 0.5, "b": None, "c": [0, 1]}


def test_compare_paired_reports_deltas():
    y = np.array([0, 0, 1, 1])
    r = compare_paired(
        y, [0.6, 0.1, 0.4, 0.9], [0.2, 0.1, 0.7, 0.9], threshold=0.5, n_bootstrap=50, names=("without", "with")
    )
    assert r["without"]["accuracy"] == 0.5 and r["with"]["accuracy"] == 1.0
    assert r["delta"]["acc_violent"] == 0.5 and r["delta"]["acc_nonviolent"] == 0.5
    assert r["mcnemar"]["c"] == 2 and r["accuracy_diff_ci"][0] == 0.5


def test_describe_comparison_states_significance_in_words():
    gain = describe_comparison("ensemble vs best member", [0.05, 0.02, 0.08], 0.01)
    assert "+5.0 pp" in gain and "95% CI +2.0 to +8.0 pp" in gain and "significant gain" in gain
    assert "significant loss" in describe_comparison("x", [-0.05, -0.08, -0.02], 0.01)
    unclear = describe_comparison("TTA vs no TTA", [0.016, -0.016, 0.047], 0.62)
    assert "not significant" in unclear and "p = 0.62" in unclear
    # a CI that excludes zero but a McNemar test that does not reject stays "not significant"
    assert "not significant" in describe_comparison("x", [0.03, 0.01, 0.05], 0.2)
    assert "no measurable effect" in describe_comparison("x", [0.0, 0.0, 0.0], 1.0)
    assert "could not be estimated" in describe_comparison("x", [float("nan")] * 3, float("nan"))


def test_a_difference_is_significant_only_when_its_interval_excludes_zero():
    from nexara_lib.evaluation.stats import ci_excludes_zero

    assert ci_excludes_zero(0.01, 0.2) and ci_excludes_zero(-0.3, -0.02)
    assert not ci_excludes_zero(-0.01, 0.2) and not ci_excludes_zero(0.0, 0.1)  # touching zero: no
    assert not ci_excludes_zero(float("nan"), 0.2) and not ci_excludes_zero(0.1, float("inf"))
