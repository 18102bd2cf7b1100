"""TTA: the test-time views of the transform registry (fixed parameters, semantics), aggregation,
view selection and the with/without comparison."""

import numpy as np
import pytest

from nexara_lib.evaluation import tta
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.transforms.registry import available_transforms, get_transform

RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, size=(6, 8, 10, 3), dtype=np.uint8)
FEATURES = RNG.normal(size=(4, 6, 5)).astype(np.float16)
FEATURE_STD = FEATURES.astype(np.float32).reshape(-1, 5).std(0)
INDICES = np.array([0, 3, 6, 9])  # T = 4 frames sampled over a 10-frame clip
VIEWS = available_transforms(use="tta")


def view(name, x, **inputs):
    """The test-time view ``name`` of ``x``, with its fixed parameters."""
    transform = get_transform(name)
    return transform.apply(x, transform.view_params(), feature_std=FEATURE_STD, span=10, **inputs)


@pytest.mark.parametrize("name", VIEWS)
def test_every_view_keeps_shape_dtype_and_is_deterministic(name):
    transform = get_transform(name)
    x = {"pixels": FRAMES, "sampling": INDICES, "features": FEATURES}[transform.acts_on]
    before = x.copy()
    out = view(name, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert np.array_equal(x, before)  # the input is not modified in place
    assert np.array_equal(out, view(name, x))  # same input, same view
    if name != "identity":
        assert not np.array_equal(out, x), f"{name} changed nothing"


def test_expected_views_are_registered():
    levels = {name: get_transform(name).level for name in VIEWS}
    assert levels == {
        "identity": "frame",
        "hflip": "frame",
        "brightness_contrast": "frame",
        "frame_rate": "frame",
        "frame_shift": "frame",
        "feature_shift": "feature",
        "feature_noise": "feature",
    }
    # frame_shift changes which frames are read (the sampling), not the pixels
    assert get_transform("frame_shift").acts_on == "sampling"


def test_view_semantics():
    flipped = view("hflip", FRAMES)
    assert np.array_equal(flipped[:, :, 0], FRAMES[:, :, -1])
    assert np.array_equal(view("hflip", flipped), FRAMES)
    half = view("frame_rate", FRAMES)
    assert np.array_equal(half[1], FRAMES[0]) and np.array_equal(half[2], FRAMES[2])
    shifted = view("feature_shift", FEATURES)
    assert np.array_equal(shifted[:, 0], FEATURES[:, 0]) and np.array_equal(shifted[:, 1:], FEATURES[:, :-1])
    assert view("frame_shift", INDICES).tolist() in ([2, 5, 8, 9], [1, 4, 7, 9])  # half a stride (3) later, clipped
    bright = view("brightness_contrast", np.array([0, 100, 250], np.uint8).reshape(1, 1, 1, 3))
    assert bright.ravel().tolist() == [0, 105, 255]  # alpha 1.15, beta -10, clipped at both ends
    features = FEATURES.astype(np.float32)
    noisy = view("feature_noise", features)
    ratio = (noisy - features).reshape(-1, 5).std(0) / FEATURE_STD
    assert np.all((ratio > 0.02) & (ratio < 0.1))
    noise = get_transform("feature_noise")
    other_seed = noise.apply(features, noise.view_params(seed=1), feature_std=FEATURE_STD)
    assert not np.array_equal(noisy, other_seed)


def test_view_input_errors():
    with pytest.raises(ValueError, match="unknown transform 'rotate'.*hflip"):
        get_transform("rotate")
    with pytest.raises(ValueError, match="uint8"):
        view("hflip", FRAMES.astype(np.float32))
    noise = get_transform("feature_noise")
    with pytest.raises(ValueError, match="feature_std"):
        noise.apply(FEATURES, noise.view_params())
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        view("feature_shift", FEATURES[0])
    with pytest.raises(ValueError, match="not a test-time view"):
        get_transform("temporal_shift").view_params()


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
    signal = y - 0.5
    views = {
        "identity": np.clip(0.5 + 0.3 * signal + rng.normal(0, 0.25, 200), 0, 1),
        "good": np.clip(0.5 + 0.6 * signal + rng.normal(0, 0.15, 200), 0, 1),
        "bad": np.clip(0.5 + rng.normal(0, 0.01, 200) - 0.45 * signal, 0, 1),
    }
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
