"""Stream views motion_image and motion_image_crop: each sampled frame's amplified difference from its motion
reference (the next decoded frame, or the neighbouring sampled frame when nothing moves against it)."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.config import SCHEMA, ParamError, coerce
from nexara_lib.features.cache import read_clip_records
from nexara_lib.features.clip_jobs import decode_job, sampled_indices
from nexara_lib.features.extract import _jobs, extract_features
from nexara_lib.features.stream import FeatureStream, view_params_from
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.transforms.frame_views import crop_square, motion_window
from nexara_lib.transforms.motion_images import motion_image
from nexara_lib.transforms.registry import get_transform
from nexara_lib.video.frames import read_sampled_frames

T = 6
BASE = FeatureStream("mobilenetv2", "none", T, 32)


def amplified(a: np.ndarray, b: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(np.abs(a.astype(np.int32) - b.astype(np.int32)) * gain, 0, 255).astype(np.uint8)


def moving_frames(n: int, size=(80, 60), seed=0) -> np.ndarray:
    """(n, H, W, 3) RGB frames: a textured background and a bright square moving right."""
    rng = np.random.default_rng(seed)
    w, h = size
    background = cv2.GaussianBlur(rng.integers(0, 160, (h, w, 3), dtype=np.uint8), (3, 3), 0)
    frames = np.repeat(background[None], n, axis=0)
    for i in range(n):
        x = 4 + 3 * i
        frames[i, 30:42, x : x + 12] = 250
    return frames


def write_clip(path, frames: np.ndarray, repeat: int = 1, fps: float = 15.0) -> Path:
    """An MJPG clip (intra-only: equal frames decode equally) of ``frames``, each written ``repeat`` times."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        for _ in range(repeat):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)


def job_of(stream, path, n):
    return _jobs(pd.DataFrame([{"clip_id": "c", "path": str(path), "label": 1, "frames": n}]), stream)[0]


# --------------------------------------------------------------------------- the images


def test_the_motion_image_is_the_amplified_difference_from_the_next_frame():
    frames = moving_frames(8)
    pairs = np.stack([frames[:-1:2], frames[1::2]], axis=1)[:3]  # (3, 2, H, W, 3): every next frame differs
    for gain in (1.0, 4.0, 9.0):
        out, record = get_transform("motion_image").apply(pairs, {"gain": gain}, size=80, pairs=False)
        assert record == {"motion_fallback_frames": 0, "motion_neighbour_frames": 0}
        assert out.shape == (3, 80, 80, 3) and out.dtype == np.uint8
        for i, (frame, following) in enumerate(pairs):
            want = cv2.resize(amplified(frame, following, gain), (80, 80), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(out[i], want)
    assert out.max() == 255  # the square's edges saturate at gain 9


def test_a_repeated_next_frame_makes_the_neighbouring_sampled_frame_the_reference():
    frames = moving_frames(4)
    pairs = np.stack([frames, frames], axis=1)  # every next decoded frame is a copy (a clip stored at twice its rate)
    out, record = get_transform("motion_image").apply(pairs, {"gain": 4.0}, size=32, pairs=False)
    assert record == {"motion_fallback_frames": 0, "motion_neighbour_frames": 4}
    for i, neighbour in enumerate([1, 2, 3, 2]):  # the next sampled frame; the last one's is the previous
        np.testing.assert_array_equal(out[i], motion_image(frames[i], frames[neighbour], None, 4.0, 32))
        assert out[i].max() > 0


def test_the_crop_variant_is_cut_at_the_motion_crop_window():
    frames = moving_frames(6)
    pairs = np.stack([frames[:-1], frames[1:]], axis=1)
    params = {"gain": 4.0, "fraction": 0.5}
    out, _ = get_transform("motion_image_crop").apply(pairs, params, size=32, pairs=False)
    crops, _ = get_transform("motion_crop").apply(pairs, {"fraction": 0.5}, size=32, pairs=False)
    for i, (frame, following) in enumerate(pairs):
        window = motion_window(frame, following, 0.5)
        top, left, height, width = window
        assert (height, width) == (30, 40) and left <= 4 + 3 * i < left + width  # the moving square's window
        np.testing.assert_array_equal(crops[i], crop_square(frame, window, 32))  # motion_crop's own window
        cut = amplified(
            frame[top : top + height, left : left + width], following[top : top + height, left : left + width], 4
        )
        np.testing.assert_array_equal(out[i], cv2.resize(cut, (32, 32), interpolation=cv2.INTER_AREA))


def test_where_nothing_moves_the_images_are_black_and_the_crop_is_the_whole_frame():
    still = np.repeat(moving_frames(1), 3, axis=0)
    pairs = np.stack([still, still], axis=1)
    for name in ("motion_image", "motion_image_crop"):
        out, record = get_transform(name).apply(pairs, {}, size=24, pairs=False)
        assert record == {"motion_fallback_frames": 3, "motion_neighbour_frames": 3} and not out.any()


def test_the_views_apply_without_touching_their_input_and_refuse_bad_input():
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 30, 41, 3), dtype=np.uint8)
    before = frames.copy()
    for name in ("motion_image", "motion_image_crop"):
        entry = get_transform(name)
        out, _ = entry.apply(frames, entry.stream.check({}), size=16, pairs=False)
        again, _ = entry.apply(frames, entry.stream.check({}), size=16, pairs=False)
        np.testing.assert_array_equal(out, again)
        assert out.shape == (3, 16, 16, 3) and np.array_equal(frames, before)
        with pytest.raises(ValueError, match="next frame"):
            entry.apply(frames[:, 0], {}, size=16, pairs=False)
        with pytest.raises(ValueError, match="cannot take it"):
            entry.apply(frames, {}, size=16, pairs=True)


# --------------------------------------------------------------------------- keys, parameters, stream sets


def test_keys_hold_the_gain_and_the_fraction_and_parameters_are_checked():
    keys = {
        BASE.with_view("motion_image").key,
        BASE.with_view("motion_image", gain=2).key,
        BASE.with_view("motion_image", fraction=0.25).key,
        BASE.with_view("motion_image_crop").key,
        BASE.with_view("motion_crop").key,
    }
    assert len(keys) == 5
    assert BASE.with_view("motion_image_crop").key == "mobilenetv2-none-T6-S32-motion_image_crop-g4.00-f0.50"
    assert BASE.with_view("motion_image", gain=2.125).key.endswith("motion_image-g2.125-f0.50")
    assert BASE.with_view("motion_image").reads_next and BASE.with_view("motion_image").regions == 1
    for params, match in (
        ({"gain": 0}, "gain must be a positive number"),
        ({"gain": "4"}, "gain must be a positive number"),
        ({"fraction": 1.5}, r"fraction must be a number in \(0, 1\]"),
        ({"grid": 2}, r"unknown parameter\(s\) \['grid'\]"),
    ):
        with pytest.raises(ValueError, match=match):
            BASE.with_view("motion_image_crop", **params)
    with pytest.raises(ValueError, match="reads \\(frame, next frame\\) pairs"):
        FeatureStream("flow", "none", T).with_view("motion_image")


def test_run_parameters_and_stream_set_items_name_the_views():
    run = {"backbone": "mobilenetv2", "backbone_weights": "none", "frames_per_clip": T, "image_size": 32}
    assert SCHEMA["motion_image_gain"].default == 4.0 and SCHEMA["motion_image_gain"].stage == "features"
    assert coerce("motion_image_gain", 2, "test") == 2.0
    with pytest.raises(ParamError):
        coerce("motion_image_gain", 0.0, "test")
    assert view_params_from({"motion_image_gain": 3.0, "motion_crop_fraction": 0.4}, "motion_image_crop") == {
        "gain": 3.0,
        "fraction": 0.4,
    }
    streams = StreamSet.parse("identity+motion_crop+motion_image_crop", {**run, "motion_image_gain": 3.0}).streams
    assert [s.key.rsplit("-S32-", 1)[1] for s in streams] == [
        "identity",
        "motion_crop-f0.50",
        "motion_image_crop-g3.00-f0.50",
    ]
    with pytest.raises(ValueError, match="pairs"):
        StreamSet.parse(["identity", "flow:motion_image"], run)


def test_surv_dev_offers_the_motion_images_to_the_selection():
    import yaml

    surv = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "surv_dev.yaml").read_text())
    params = {**{k: p.default for k, p in SCHEMA.items()}, **surv}
    sets = {StreamSet.parse(spec, params).name: StreamSet.parse(spec, params) for spec in params["candidate_streams"]}
    assert "identity+motion_crop+motion_image_crop" in sets  # the selection decides whether it helps
    assert sets["identity+motion_crop+motion_image_crop"].streams[2].key.endswith("motion_image_crop-g4.00-f0.50")


# --------------------------------------------------------------------------- extraction


def test_extraction_decodes_once_and_records_repeated_next_frames(tmp_path):
    frames = moving_frames(10)
    doubled = write_clip(tmp_path / "doubled.avi", frames, repeat=2)  # 15 fps stored at 30: every other frame a copy
    stream = BASE.with_view("motion_image_crop")
    answer = decode_job(job_of(stream, doubled, 20))
    assert answer.error is None and answer.frames.shape == (T, 32, 32, 3)
    indices = sampled_indices(20, T, pairs=True)
    copies = sum(i % 2 == 0 for i in indices)  # a frame at an even index is followed by its copy
    assert answer.record["motion_neighbour_frames"] == copies > 0 and answer.record["motion_fallback_frames"] == 0
    assert answer.record["grabs"] + answer.record["seeks"] <= 20  # one forward pass
    pairs, _ = read_sampled_frames(doubled, indices, size=None, with_next=True)
    want, _ = get_transform("motion_image_crop").apply(pairs, dict(stream.view_params), size=32, pairs=False)
    np.testing.assert_array_equal(answer.frames, want)


@pytest.mark.realdata
def test_motion_images_of_a_real_cctv_clip(tmp_path, real_fight_clip):
    clip = real_fight_clip
    manifest = pd.DataFrame([{"clip_id": clip.name, "path": str(clip), "label": 1, "frames": 0}])
    base = FeatureStream("mobilenet_v1_tflite", "imagenet", 4)
    for view in ("motion_image", "motion_image_crop"):
        done = extract_features(manifest, base.with_view(view), tmp_path, workers=0, progress=False)
        assert done["computed"] == 1 and not done["failed"]
        record = read_clip_records(done["cache_dir"]).iloc[0]
        assert 0 <= record["motion_neighbour_frames"] <= 4
        x, _, _ = base.with_view(view).load(manifest, tmp_path)
        assert x.shape == (1, 4, 1024) and x.std() > 0
