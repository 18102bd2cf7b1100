"""Seeded frame-level augmentation copies: their ops, determinism, each op on tiny real arrays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nexara_lib.features.clip_jobs import sampled_indices
from nexara_lib.transforms import frame_copies as fa
from nexara_lib.transforms.registry import available_transforms

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_OPS = ["brightness_contrast", "hflip", "rotate_zoom", "temporal_jitter"]
RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, size=(4, 12, 16, 3), dtype=np.uint8)
PAIRS = RNG.integers(0, 256, size=(4, 2, 12, 16, 3), dtype=np.uint8)


def _gradient_frames(t=3, h=24, w=32) -> np.ndarray:
    """Non-uniform, non-symmetric frames in mid-grey (no clipping under brightness_contrast)."""
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.stack([60 + 4 * xs, 60 + 3 * ys, 100 + 2 * xs + ys], axis=-1)
    return np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[None], t, axis=0)


def _draw_where(op: str, predicate, clip_key: str = "clip", seed: int = 0) -> fa.FrameAugmentation:
    """The first copy whose ``op`` parameters satisfy ``predicate`` (copies are random: search a few)."""
    for copy in range(1, 200):
        aug = fa.draw_augmentation([op], clip_key, copy, seed)
        if predicate(aug.params[op]):
            return aug
    raise AssertionError(f"no copy of {op} in 200 draws satisfied the predicate")


# --------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------
def test_expected_ops_are_registered():
    assert available_transforms("frame", "augment") == ALL_OPS


@pytest.mark.parametrize("name", available_transforms("frame", "augment"))
def test_every_op_draws_json_params_and_keeps_shapes(name):
    aug = fa.draw_augmentation([name], "clip-7", 1, 3)
    assert set(aug.params) == {name}
    assert json.loads(json.dumps(aug.params)) == aug.params
    for frames in (FRAMES, PAIRS):
        out = aug.apply(frames)
        assert out.shape == frames.shape and out.dtype == np.uint8
    indices = sampled_indices(50, 8)
    jittered = aug.jitter_indices(indices, 50)
    assert jittered.shape == indices.shape and jittered.dtype == np.int64
    if name != "temporal_jitter":
        assert np.array_equal(jittered, indices)


def test_unknown_op_error_lists_the_known_ops():
    with pytest.raises(ValueError) as err:
        fa.check_frame_augment_ops(["hflip", "blur"])
    message = str(err.value)
    assert "'blur'" in message and all(name in message for name in ALL_OPS)
    with pytest.raises(ValueError, match="frame-level augmentation"):  # a test-time view, or a feature op
        fa.check_frame_augment_ops(["frame_rate"])
    with pytest.raises(ValueError, match="frame-level augmentation"):
        fa.check_frame_augment_ops(["noise"])


@pytest.mark.parametrize("ops", [[], "hflip", None, ["hflip", "hflip"], [3]])
def test_bad_op_lists_are_rejected(ops):
    with pytest.raises(ValueError, match="hflip|available"):
        fa.check_frame_augment_ops(ops)


def test_duplicate_error_names_the_duplicate():
    with pytest.raises(ValueError, match=r"\['rotate_zoom'\] are listed more than once"):
        fa.draw_augmentation(["rotate_zoom", "hflip", "rotate_zoom"], "clip", 1, 0)


@pytest.mark.parametrize("copy, seed", [(0, 0), (-1, 0), (1.5, 0), (True, 0), (1, "7"), (1, 2.0)])
def test_bad_copy_or_seed_is_rejected(copy, seed):
    with pytest.raises(ValueError, match="copy|seed"):
        fa.draw_augmentation(["hflip"], "clip", copy, seed)
    with pytest.raises(ValueError, match="copy|seed"):
        fa.augmentation_transform_name(["hflip"], copy, seed)


def test_bad_clip_key_is_rejected():
    with pytest.raises(ValueError, match="clip_key"):
        fa.draw_augmentation(["hflip"], "", 1, 0)


def test_importing_does_not_import_tensorflow():
    code = (
        "import sys, nexara_lib.transforms.frame_copies; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
def test_same_inputs_give_the_same_augmentation():
    first = fa.draw_augmentation(ALL_OPS, "clip-1", 2, 42)
    second = fa.draw_augmentation(list(reversed(ALL_OPS)), "clip-1", 2, 42)
    assert first == second
    assert np.array_equal(first.apply(FRAMES), second.apply(FRAMES))
    indices = sampled_indices(80, 10)
    assert np.array_equal(first.jitter_indices(indices, 80), second.jitter_indices(indices, 80))


def test_same_params_in_a_fresh_process_with_another_hash_seed():
    here = fa.draw_augmentation(ALL_OPS, "fight/clip 01.avi", 3, 1234).params
    code = (
        "import json; from nexara_lib.transforms.frame_copies import draw_augmentation; "
        f"print(json.dumps(draw_augmentation({ALL_OPS!r}, 'fight/clip 01.avi', 3, 1234).params))"
    )
    env = dict(os.environ, PYTHONHASHSEED="987")  # a salted hash() would differ here
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == here


@pytest.mark.parametrize("change", ["copy", "clip_key", "seed"])
def test_different_copy_clip_or_seed_give_different_params(change):
    base = {"clip_key": "clip-a", "copy": 1, "seed": 0}
    draws = []
    for k in range(5):
        kwargs = dict(base)
        kwargs[change] = {"copy": 1 + k, "clip_key": f"clip-{k}", "seed": k}[change]
        draws.append(json.dumps(fa.draw_augmentation(ALL_OPS, **kwargs).params, sort_keys=True))
    assert len(set(draws)) == len(draws)


def test_params_vary_across_copies_within_their_ranges():
    params = [fa.draw_augmentation(ALL_OPS, "clip", copy, 5).params for copy in range(1, 41)]
    flips = {p["hflip"]["flip"] for p in params}
    assert flips == {True, False}
    assert all(0.8 <= p["brightness_contrast"]["alpha"] <= 1.2 for p in params)
    assert all(-20 <= p["brightness_contrast"]["beta"] <= 20 for p in params)
    assert all(-8 <= p["rotate_zoom"]["angle"] <= 8 for p in params)
    assert all(0.9 <= p["rotate_zoom"]["zoom"] <= 1.1 for p in params)
    assert len({p["rotate_zoom"]["angle"] for p in params}) == len(params)


def test_params_cannot_be_mutated_through_the_property():
    aug = fa.draw_augmentation(["hflip"], "clip", 1, 0)
    aug.params["hflip"]["flip"] = "changed"
    assert aug.params["hflip"]["flip"] in (True, False)


# --------------------------------------------------------------------------
# Transform names
# --------------------------------------------------------------------------
def test_transform_names_are_stable_and_distinct():
    name = fa.augmentation_transform_name(["hflip", "rotate_zoom"], 1, 0)
    assert name == fa.augmentation_transform_name(["rotate_zoom", "hflip"], 1, 0)
    assert fa.is_augmentation_transform(name) and name.startswith("aug-") and name.endswith("-c1")
    others = {
        fa.augmentation_transform_name(["hflip"], 1, 0),
        fa.augmentation_transform_name(["hflip", "rotate_zoom"], 1, 1),
        fa.augmentation_transform_name(["hflip", "rotate_zoom"], 2, 0),
        fa.augmentation_transform_name(ALL_OPS, 1, 0),
    }
    assert name not in others and len(others) == 4
    assert fa.draw_augmentation(["rotate_zoom", "hflip"], "any clip", 1, 0).transform_name == name


def test_transform_name_is_the_same_in_a_fresh_process():
    code = "from nexara_lib.transforms.frame_copies import augmentation_transform_name as n; print(n(['hflip'], 4, 9))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONHASHSEED="5"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == fa.augmentation_transform_name(["hflip"], 4, 9)


def test_cache_names_and_draws_are_pinned():
    # changing these would orphan every cached augmentation copy
    assert fa.augmentation_transform_name(ALL_OPS, 1, 42) == "aug-223453a1-c1"
    assert fa.augmentation_transform_name(["hflip"], 4, 9) == "aug-24bd6c66-c4"
    assert fa.draw_augmentation(ALL_OPS, "clip-1", 2, 42).params == {
        "brightness_contrast": {"alpha": 1.0895948410539211, "beta": -11.734650937406856},
        "hflip": {"flip": False},
        "rotate_zoom": {"angle": -6.623643405907131, "zoom": 0.912613497016437},
        "temporal_jitter": {"seed": 1941143555},
    }


@pytest.mark.parametrize(
    "name, expected",
    [
        ("aug-0123abcd-c1", True),
        ("aug-0123abcd-c12", True),
        ("aug-0123abcd-c0", False),
        ("identity", False),
        ("hflip", False),
        ("aug-0123ABCD-c1", False),
        ("aug-0123abc-c1", False),
        (None, False),
    ],
)
def test_is_augmentation_transform(name, expected):
    assert fa.is_augmentation_transform(name) is expected


# --------------------------------------------------------------------------
# Pixel ops
# --------------------------------------------------------------------------
def test_hflip_mirrors_when_flip_is_drawn():
    flipped = _draw_where("hflip", lambda p: p["flip"])
    assert np.array_equal(flipped.apply(FRAMES), FRAMES[:, :, ::-1])
    kept = _draw_where("hflip", lambda p: not p["flip"])
    assert np.array_equal(kept.apply(FRAMES), FRAMES)


@pytest.mark.parametrize("brighter", [True, False])
def test_brightness_contrast_moves_the_mean_in_the_expected_direction(brighter):
    frames = _gradient_frames()
    mean = frames.mean()

    def expected_change(p):
        return (p["alpha"] - 1) * mean + p["beta"]

    aug = _draw_where("brightness_contrast", lambda p: expected_change(p) > 5 if brighter else expected_change(p) < -5)
    params = aug.params["brightness_contrast"]
    out = aug.apply(frames)
    assert bool(out.mean() > mean) is brighter
    assert out.mean() == pytest.approx(params["alpha"] * mean + params["beta"], abs=0.6)


def test_brightness_contrast_clips_instead_of_wrapping():
    extremes = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    extremes[0, 1] = 255
    darker = _draw_where("brightness_contrast", lambda p: p["beta"] < -5 and p["alpha"] > 1.05)
    out = darker.apply(extremes)
    assert (out[0, 0] == 0).all() and (out[0, 1] == 255).all()


def test_rotate_zoom_keeps_shape_and_dtype_and_changes_pixels():
    frames = _gradient_frames()
    aug = _draw_where("rotate_zoom", lambda p: abs(p["angle"]) > 2)
    out = aug.apply(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frames)
    assert np.array_equal(out[0], out[1])  # same parameters for every frame of the clip


def test_all_pixel_ops_together_on_pairs_transform_both_frames_alike():
    same = np.repeat(FRAMES[:, None], 2, axis=1)  # next frame == frame
    for copy in range(1, 6):
        aug = fa.draw_augmentation(ALL_OPS, "clip", copy, 0)
        out = aug.apply(same)
        assert out.shape == same.shape and out.dtype == np.uint8
        assert np.array_equal(out[:, 0], out[:, 1])
        assert np.array_equal(out[:, 0], aug.apply(FRAMES))  # a pair's frame is treated like a single frame


def test_apply_does_not_modify_the_input():
    for frames in (FRAMES, PAIRS):
        before = frames.copy()
        for copy in range(1, 6):
            out = fa.draw_augmentation(ALL_OPS, "clip", copy, 0).apply(frames)
            assert not np.shares_memory(out, frames)
        assert np.array_equal(frames, before)


def test_apply_returns_a_copy_even_when_nothing_changes():
    kept = _draw_where("hflip", lambda p: not p["flip"])
    out = kept.apply(FRAMES)
    assert np.array_equal(out, FRAMES) and not np.shares_memory(out, FRAMES)


@pytest.mark.parametrize(
    "bad", [FRAMES.astype(np.float32), FRAMES[..., :1], FRAMES[0], np.zeros((4, 3, 12, 16, 3), np.uint8)]
)
def test_apply_rejects_bad_frames(bad):
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        fa.draw_augmentation(["hflip"], "clip", 1, 0).apply(bad)


# --------------------------------------------------------------------------
# temporal_jitter
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_frames, t, pairs",
    [
        (100, 16, False),
        (100, 16, True),
        (37, 5, False),
        (20, 1, False),
        (1, 1, False),
        (5, 16, False),
        (3, 8, True),
        (2, 4, True),
        (17, 17, False),
    ],
)
def test_temporal_jitter_keeps_indices_sorted_in_range_and_near(n_frames, t, pairs):
    indices = sampled_indices(n_frames, t, pairs=pairs)
    span = n_frames - 1 if pairs and n_frames >= 2 else n_frames
    stride = (span - 1) / max(t - 1, 1)
    for copy in range(1, 21):
        out = fa.draw_augmentation(["temporal_jitter"], f"clip-{n_frames}", copy, 0).jitter_indices(indices, span)
        assert out.shape == indices.shape and out.dtype == np.int64
        assert (np.diff(out) >= 0).all()
        assert out.min() >= 0 and out.max() <= span - 1
        assert (np.abs(out - indices) <= 0.5 * stride).all()


def test_temporal_jitter_moves_indices_of_long_clips():
    indices = sampled_indices(200, 8)
    moved = [
        not np.array_equal(
            fa.draw_augmentation(["temporal_jitter"], "clip", copy, 0).jitter_indices(indices, 200), indices
        )
        for copy in range(1, 6)
    ]
    assert all(moved)


def test_jitter_is_identity_without_temporal_jitter():
    indices = sampled_indices(60, 6)
    aug = fa.draw_augmentation(["hflip", "rotate_zoom"], "clip", 1, 0)
    out = aug.jitter_indices(indices, 60)
    assert np.array_equal(out, indices) and not np.shares_memory(out, indices)


def test_temporal_jitter_leaves_pixels_alone():
    aug = fa.draw_augmentation(["temporal_jitter"], "clip", 1, 0)
    assert np.array_equal(aug.apply(FRAMES), FRAMES)


@pytest.mark.parametrize(
    "indices, span",
    [
        (np.array([0, 5, 10]), 10),
        (np.array([-1, 3]), 10),
        (np.array([0.0, 1.0]), 10),
        (np.array([], dtype=np.int64), 10),
        (np.array([0, 1]), 0),
    ],
)
def test_jitter_rejects_bad_indices_or_span(indices, span):
    with pytest.raises(ValueError, match="span|indices"):
        fa.draw_augmentation(["temporal_jitter"], "clip", 1, 0).jitter_indices(indices, span)
