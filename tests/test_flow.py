"""Tests for the weight-free optical-flow motion stream (nexara_lib.flow)."""

import time

import cv2
import numpy as np
import pytest

from nexara_lib.features.flow import FEATURE_NAMES, FLOW_FEATURE_DIM, WORK_SIZE, flow_features


def _texture(height=120, width=160, seed=0):
    """Smooth random texture: enough structure for optical flow to lock onto."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 0)


def _shifted(img, dx, dy):
    # Shift the content by (dx, dy) pixels; reflected borders avoid a fake edge.
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _features_of(frame_a, frame_b):
    return dict(zip(FEATURE_NAMES, flow_features(np.stack([np.stack([frame_a, frame_b])]))[0], strict=True))


def test_shape_dtype_and_names():
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, 256, size=(3, 2, 60, 80, 3), dtype=np.uint8)
    out = flow_features(pairs)
    assert out.shape == (3, FLOW_FEATURE_DIM)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert len(FEATURE_NAMES) == FLOW_FEATURE_DIM == len(set(FEATURE_NAMES))


def test_accepts_negative_stride_views():
    # frames[..., ::-1] is how callers turn OpenCV's BGR into RGB.
    img = _texture()
    pairs = np.stack([np.stack([img, _shifted(img, 3, 0)])])
    np.testing.assert_allclose(flow_features(pairs[..., ::-1]), flow_features(np.ascontiguousarray(pairs[..., ::-1])))


def test_zero_motion_gives_near_zero_magnitude():
    img = _texture()
    f = _features_of(img, img.copy())
    # Percent of width: 0.05 % of 112 px is well under a tenth of a pixel.
    for name in ("mag_mean", "mag_p90", "dx_mean", "dy_mean"):
        assert abs(f[name]) < 0.05, (name, f[name])
    assert f["mag_max"] < 0.15
    assert f["moving_frac_1"] == 0.0
    assert f["mag_hist_0"] == pytest.approx(1.0)
    assert all(f[f"dir_hist_{k}"] == 0.0 for k in range(8))


def test_camera_noise_alone_is_not_motion():
    img = _texture().astype(np.float32)
    rng = np.random.default_rng(2)
    a = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    b = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    f = _features_of(a, b)
    assert f["moving_frac_1"] < 0.05
    assert f["mag_mean"] < 0.5


@pytest.mark.parametrize("dx, dy, expected_bin", [(4, 0, 0), (-4, 0, 4), (0, 4, 2), (0, -4, 6)])
def test_translation_gives_expected_direction_bin(dx, dy, expected_bin):
    img = _texture()
    f = _features_of(img, _shifted(img, dx, dy))
    bins = np.array([f[f"dir_hist_{k}"] for k in range(8)])
    assert bins.argmax() == expected_bin
    assert bins[expected_bin] > 0.8
    # Percent of width: a 4 px shift of a 160 px wide frame is 2.5 % of the width
    # (horizontal); vertically 4 px of 120 px is 3.33 % of the (square) working frame.
    expected = 100.0 * (abs(dx) / img.shape[1] + abs(dy) / img.shape[0])
    assert f["mag_p50"] == pytest.approx(expected, rel=0.15)
    for mean, shift in ((f["dx_mean"], dx), (f["dy_mean"], dy)):
        if shift:
            assert np.sign(mean) == np.sign(shift)
        else:
            assert abs(mean) < 0.2
    assert f["global_incoherence"] < 0.1
    assert f["opposing_share"] < 0.05


def test_opposing_motion_is_less_coherent_than_a_rigid_shift():
    img = _texture()
    rigid = _features_of(img, _shifted(img, 4, 0))
    # Left half moves left, right half moves right: the kind of cancelling
    # motion two bodies pushing apart produce.
    split = _shifted(img, 4, 0)
    split[:, : img.shape[1] // 2] = _shifted(img, -4, 0)[:, : img.shape[1] // 2]
    opposing = _features_of(img, split)
    assert opposing["global_incoherence"] > rigid["global_incoherence"] + 0.5
    assert opposing["opposing_share"] > 0.3
    assert opposing["dir_hist_0"] > 0.3 and opposing["dir_hist_4"] > 0.3
    assert opposing["abs_div_p95"] > rigid["abs_div_p95"]


def test_motion_location_shows_in_the_grid():
    img = _texture()
    moved = img.copy()
    # Only the top-left third moves.
    h, w = img.shape[0] // 3, img.shape[1] // 3
    moved[:h, :w] = _shifted(img, 4, 0)[:h, :w]
    f = _features_of(img, moved)
    grid = np.array([f[f"grid_{r}{c}"] for r in range(3) for c in range(3)])
    assert grid.argmax() == 0
    assert f["grid_max_share"] > 0.5


def test_fast_enough():
    rng = np.random.default_rng(3)
    img = _texture(144, 192)
    pairs = np.stack([np.stack([img, _shifted(img, rng.uniform(-5, 5), rng.uniform(-5, 5))]) for _ in range(16)])
    flow_features(pairs[:1])  # warm-up
    best = min(_timed(flow_features, pairs) for _ in range(3)) / len(pairs)
    # About 3 ms per pair on one free core; the bound leaves room for a busy CI box.
    assert best < 0.015, f"{best * 1e3:.1f} ms per pair at working size {WORK_SIZE}"


def _timed(fn, arg):
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[np.zeros((32, 32, 3), np.uint8)] * 2], "numpy array"),
        (np.zeros((2, 2, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((2, 32, 32, 3), np.uint8), r"\(T, 2, H, W, 3\)"),
        (np.zeros((2, 3, 32, 32, 3), np.uint8), r"\(T, 2, H, W, 3\)"),
        (np.zeros((2, 2, 32, 32, 1), np.uint8), r"\(T, 2, H, W, 3\)"),
        (np.zeros((0, 2, 32, 32, 3), np.uint8), "at least one pair"),
        (np.zeros((1, 2, 4, 4, 3), np.uint8), "8x8"),
    ],
)
def test_bad_input_raises_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        flow_features(bad)
