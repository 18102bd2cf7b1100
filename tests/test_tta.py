"""TTA registry (every entry run once on tiny inputs), aggregation and view selection."""
import numpy as np
import pytest

from nexara_lib.evaluation import tta
from nexara_lib.evaluation.metrics import Predictions

RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, size=(6, 8, 10, 3), dtype=np.uint8)
FEATURES = RNG.normal(size=(4, 6, 5)).astype(np.float16)
FEATURE_STD = FEATURES.astype(np.float32).reshape(-1, 5).std(0)


def _apply(transform, x):
    kwargs = {"feature_std": FEATURE_STD} if transform.name == "feature_noise" else {}
    return transform(x, **kwargs)


@pytest.mark.parametrize("name", sorted(tta.TTA_TRANSFORMS))
def test_every_transform_keeps_shape_dtype_and_is_deterministic(name):
    transform = tta.get_tta_transform(name)
    assert transform.level in tta.LEVELS
    x = FRAMES if transform.level == "frame" else FEATURES
    before = x.copy()
    out = _apply(transform, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert np.array_equal(x, before)  # the input is not modified in place
    assert np.array_equal(out, _apply(transform, x))  # same input, same view
    if transform.sampling_offset:  # frame_shift changes which frames are read, not the frames
        assert np.array_equal(out, x) and name == "frame_shift"
    elif name != "identity":
        assert not np.array_equal(out, x), f"{name} changed nothing"


def test_expected_levels_are_registered():
    levels = {name: t.level for name, t in tta.TTA_TRANSFORMS.items()}
    assert levels == {"identity": "frame", "hflip": "frame", "brightness_contrast": "frame", "frame_rate": "frame",
                      "frame_shift": "frame", "temporal_shift": "feature", "feature_noise": "feature"}


def test_transform_semantics():
    assert np.array_equal(tta.hflip(FRAMES)[:, :, 0], FRAMES[:, :, -1])
    assert np.array_equal(tta.hflip(tta.hflip(FRAMES)), FRAMES)
    half = tta.frame_rate(FRAMES)
    assert np.array_equal(half[1], FRAMES[0]) and np.array_equal(half[2], FRAMES[2])
    shifted = tta.temporal_shift(FEATURES)
    assert np.array_equal(shifted[:, 0], FEATURES[:, 0]) and np.array_equal(shifted[:, 1:], FEATURES[:, :-1])
    bright = tta.brightness_contrast(np.array([0, 100, 250], np.uint8).reshape(1, 1, 1, 3))
    assert bright.ravel().tolist() == [0, 105, 255]  # clipped at both ends
    noisy = tta.feature_noise(FEATURES.astype(np.float32), feature_std=FEATURE_STD, scale=0.05)
    ratio = (noisy - FEATURES.astype(np.float32)).reshape(-1, 5).std(0) / FEATURE_STD
    assert np.all((ratio > 0.02) & (ratio < 0.1))
    assert not np.array_equal(noisy, tta.feature_noise(FEATURES.astype(np.float32), feature_std=FEATURE_STD, seed=1))


def test_transform_input_errors():
    with pytest.raises(ValueError, match="unknown TTA transform 'rotate'.*hflip"):
        tta.get_tta_transform("rotate")
    with pytest.raises(ValueError, match="uint8"):
        tta.hflip(FRAMES.astype(np.float32))
    with pytest.raises(ValueError, match="feature_std"):
        tta.feature_noise(FEATURES)
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        tta.temporal_shift(FEATURES[0])


def test_aggregate_methods():
    probs = np.array([[0.2, 0.9], [0.8, 0.5]])
    assert tta.aggregate(probs, "mean_prob") == pytest.approx([0.5, 0.7])
    assert tta.aggregate(probs, "max") == pytest.approx([0.8, 0.9])
    mean_logit = tta.aggregate(probs, "mean_logit")
    assert mean_logit[0] == pytest.approx(0.5)  # logits -x and x cancel
    expected = 1 / (1 + np.exp(-(np.log(9) + 0.0) / 2))
    assert mean_logit[1] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown aggregation"):
        tta.aggregate(probs, "median")
    with pytest.raises(ValueError, match=r"\(V, N\)"):
        tta.aggregate(probs[0])


def _views(split):
    # identity is mediocre; "good" carries independent signal; "bad" is pure noise.
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], 100)
    signal = (y - 0.5)
    views = {"identity": np.clip(0.5 + 0.3 * signal + rng.normal(0, 0.25, 200), 0, 1),
             "good": np.clip(0.5 + 0.6 * signal + rng.normal(0, 0.15, 200), 0, 1),
             "bad": np.clip(0.5 + rng.normal(0, 0.01, 200) - 0.45 * signal, 0, 1)}
    return {name: Predictions(split, y, p) for name, p in views.items()}


def test_choose_tta_views_keeps_helpful_and_drops_harmful_views():
    chosen = tta.choose_tta_views(_views("val"), method="mean_prob", metric="balanced_accuracy")
    assert chosen[0] == "identity" and "good" in chosen and "bad" not in chosen


def test_choose_tta_views_refuses_test_and_needs_identity():
    with pytest.raises(ValueError, match="validation split, got 'test'"):
        tta.choose_tta_views(_views("test"))
    views = _views("val")
    del views["identity"]
    with pytest.raises(ValueError, match="identity"):
        tta.choose_tta_views(views)


def test_compare_with_without():
    y = np.array([0, 0, 0, 1, 1, 1])
    without = np.array([0.6, 0.2, 0.1, 0.4, 0.3, 0.9])
    with_tta = np.array([0.3, 0.2, 0.1, 0.7, 0.6, 0.9])
    r = tta.compare_with_without(y, without, with_tta, threshold=0.5, n_bootstrap=100, seed=0)
    assert r["without"]["acc_violent"] == pytest.approx(1 / 3) and r["with"]["acc_violent"] == 1.0
    assert r["delta"]["acc_nonviolent"] == pytest.approx(1 / 3)
    assert (r["mcnemar"]["b"], r["mcnemar"]["c"]) == (0, 3)
    diff, low, high = r["balanced_accuracy_diff_ci"]
    assert diff == pytest.approx(0.5) and low <= diff <= high


def test_latency_per_clip_counts_calls():
    calls = []
    seconds = tta.latency_per_clip(lambda: calls.append(1), n_clips=10, repeats=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0
