"""Stream views (motion_crop, tiles): regions of every sampled frame, each cached as a stream of its own."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.features.backbones import create_backbone
from nexara_lib.features.cache import read_clip_records
from nexara_lib.features.clip_jobs import ClipJob, decode_job, sampled_indices
from nexara_lib.features.extract import _jobs, extract_features
from nexara_lib.features.ray_worker import encode_chunk
from nexara_lib.features.stream import FeatureStream, view_params_from
from nexara_lib.transforms.frame_views import motion_window, pool_regions, tile_bounds
from nexara_lib.transforms.registry import get_transform
from nexara_lib.video.frames import read_frames, read_sampled_frames

SIZE = (160, 120)  # (width, height) of the synthetic clips
SQUARE = 16  # side of the moving square
T = 6


def square_at(i: int) -> tuple[int, int]:
    """(x, y) top-left of the moving square in frame ``i``: it crosses the lower-right part diagonally."""
    return 70 + 4 * i, 60 + 2 * i


def write_moving_square(path, n_frames=20, noise=True, seed=0):
    """A static textured background (plus faint sensor noise) with a bright square moving on it."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 160, (SIZE[1], SIZE[0], 3), dtype=np.uint8), (3, 3), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, SIZE)
    for i in range(n_frames):
        frame = background.copy()
        if noise:
            frame = np.clip(frame.astype(np.int16) + rng.integers(-2, 3, frame.shape), 0, 255).astype(np.uint8)
        x, y = square_at(i)
        cv2.rectangle(frame, (x, y), (x + SQUARE - 1, y + SQUARE - 1), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return Path(path)


def write_static(path, n_frames=12, size=(100, 70), seed=1):
    """Every frame the same textured picture (odd tile remainders for a 3x3 grid)."""
    frame = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, size)
    for _ in range(n_frames):
        writer.write(frame)
    writer.release()
    return Path(path)


def manifest_of(paths, frames):
    return pd.DataFrame(
        [
            {"clip_id": f"clip{i}", "path": str(p), "label": i % 2, "frames": n}
            for i, (p, n) in enumerate(zip(paths, frames, strict=True))
        ]
    )


@pytest.fixture
def moving(tmp_path):
    return write_moving_square(tmp_path / "moving.avi")


@pytest.fixture
def clips(tmp_path):
    paths = [write_moving_square(tmp_path / f"m{i}.avi", 18 + i, seed=i) for i in range(3)]
    paths.append(write_static(tmp_path / "static.avi"))
    return manifest_of(paths, [18, 19, 20, 12])


def job_for(stream: FeatureStream, path, n_frames) -> ClipJob:
    return _jobs(manifest_of([path], [n_frames]), stream)[0]


# --------------------------------------------------------------------------- motion_crop


def test_motion_window_holds_the_moving_square_at_every_sampled_frame(moving):
    indices = sampled_indices(20, T, pairs=True)
    pairs, _ = read_sampled_frames(moving, indices, size=None, with_next=True)
    for i, (frame, following) in zip(indices, pairs, strict=True):
        top, left, height, width = motion_window(frame, following, 0.5)
        assert (height, width) == (60, 80)
        x, y = square_at(i)
        assert left <= x and x + SQUARE <= left + width and top <= y and y + SQUARE <= top + height, (i, x, y)


def test_motion_crop_job_crops_at_the_window_and_records_no_fallback(moving):
    stream = FeatureStream("flow", "none", T, 48).with_view("motion_crop")
    answer = decode_job(job_for(stream, moving, 20))
    assert answer.error is None and answer.frames.shape == (T, 2, 48, 48, 3)
    assert answer.record["motion_fallback_frames"] == 0
    indices = sampled_indices(20, T, pairs=True)
    pairs, _ = read_sampled_frames(moving, indices, size=None, with_next=True)
    for k, (frame, following) in enumerate(pairs):
        top, left, height, width = motion_window(frame, following, 0.5)
        for j, source in enumerate((frame, following)):  # both frames of the pair: the same window
            expected = cv2.resize(
                source[top : top + height, left : left + width], (48, 48), interpolation=cv2.INTER_AREA
            )
            np.testing.assert_array_equal(answer.frames[k, j], expected)
    # a single-frame backbone gets exactly the first frames of those pairs
    single = decode_job(job_for(FeatureStream("mobilenetv2", "none", T, 48).with_view("motion_crop"), moving, 20))
    np.testing.assert_array_equal(single.frames, answer.frames[:, 0])


def test_static_clip_falls_back_to_the_whole_frame(tmp_path):
    path = write_static(tmp_path / "static.avi")
    answer = decode_job(job_for(FeatureStream("mobilenetv2", "none", T, 48).with_view("motion_crop"), path, 12))
    assert answer.error is None and answer.record["motion_fallback_frames"] == T
    # the whole frame, resized like the clean stream's frames (same sampled frames: pairs sampling)
    np.testing.assert_array_equal(answer.frames, read_frames(path, sampled_indices(12, T, pairs=True), size=48))


def test_motion_crop_is_deterministic_and_recorded(clips, tmp_path):
    stream = FeatureStream("flow", "none", T, 48).with_view("motion_crop", fraction=0.4)
    first = extract_features(clips, stream, tmp_path / "a", workers=0, progress=False)
    second = extract_features(clips, stream, tmp_path / "b", workers=0, progress=False)
    assert first["computed"] == second["computed"] == 4 and first["key"].endswith("-motion_crop-f0.40")
    files = sorted(Path(first["cache_dir"]).glob("*.npy"))
    assert len(files) == 4
    for path in files:
        assert path.read_bytes() == (Path(second["cache_dir"]) / path.name).read_bytes()
    records = read_clip_records(first["cache_dir"]).set_index("clip_id")
    assert records.loc["clip3", "motion_fallback_frames"] == T  # the static clip
    assert (records.loc[["clip0", "clip1", "clip2"], "motion_fallback_frames"] == 0).all()


# --------------------------------------------------------------------------- tiles


def test_tiles_job_cuts_row_major_tiles_with_array_split_remainders(tmp_path):
    path = write_static(tmp_path / "static.avi")  # 100 x 70: 3 tiles of 34/33/33 x 24/23/23 pixels
    assert tile_bounds(70, 3) == [(0, 24), (24, 47), (47, 70)]
    assert [b - a for a, b in tile_bounds(100, 3)] == [len(p) for p in np.array_split(np.arange(100), 3)]
    answer = decode_job(job_for(FeatureStream("mobilenetv2", "none", 4, 40).with_view("tiles", grid=3), path, 12))
    assert answer.error is None and answer.frames.shape == (4 * 9, 40, 40, 3) and answer.record["tiles"] == 9
    native = read_frames(path, sampled_indices(12, 4), size=None)
    for t, frame in enumerate(native):
        tiles = [tile for band in np.array_split(frame, 3, axis=0) for tile in np.array_split(band, 3, axis=1)]
        for r, tile in enumerate(tiles):
            expected = cv2.resize(np.ascontiguousarray(tile), (40, 40), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(answer.frames[t * 9 + r], expected)


def test_tiles_are_cached_side_by_side_and_pooled_on_loading(clips, tmp_path):
    stream = FeatureStream("flow", "none", T, 48).with_view("tiles")
    summary = extract_features(clips, stream, tmp_path, workers=0, progress=False)
    assert summary["computed"] == 4 and summary["key"] == "flow-none-T6-S48-tiles-2x2"
    d = stream.feature_dim
    assert stream.regions == 4 and stream.cached_dim == 4 * d
    raw = np.stack([np.load(Path(summary["cache_dir"]) / job.name) for job in _jobs(clips, stream)])
    assert raw.dtype == np.float16 and raw.shape == (4, T, 4 * d)
    by_tile = raw.astype(np.float32).reshape(4, T, 4, d)
    x_max, y, ids = stream.load(clips, tmp_path)
    x_mean, _, _ = stream.with_view("tiles", pooling="mean").load(clips, tmp_path)
    assert x_max.shape == x_mean.shape == (4, T, d) and x_max.dtype == np.float32 and ids == list(clips["clip_id"])
    np.testing.assert_array_equal(x_max, np.max(by_tile, axis=2))
    np.testing.assert_allclose(x_mean, np.mean(by_tile, axis=2), rtol=1e-6, atol=1e-6)
    assert np.abs(by_tile[:, :, 0] - by_tile[:, :, 3]).max() > 0  # the tiles see different things
    # each tile is the backbone's features of that tile: tile 0 of the first clip, encoded alone
    job = _jobs(clips, stream)[0]
    frames = decode_job(job).frames.reshape(T, 4, 2, 48, 48, 3)
    np.testing.assert_allclose(raw[0, :, :d], create_backbone("flow", "none", 48)(frames[:, 0]).astype(np.float16))


def test_pool_regions_checks_its_input():
    x = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    np.testing.assert_array_equal(pool_regions(x, 1, "max"), x)
    np.testing.assert_array_equal(pool_regions(x, 4, "max"), x[:, :, 6:8])
    with pytest.raises(ValueError, match="4 regions per frame"):
        pool_regions(x[:, :, :7], 4, "max")
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_regions(x, 4, "median")


def test_each_stream_view_applies_once_without_touching_its_input():
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 30, 41, 3), dtype=np.uint8)
    before = frames.copy()
    for name, regions in (("motion_crop", 1), ("tiles", 4)):
        entry = get_transform(name)
        params = entry.stream.check({})
        for pairs in (False, True):
            out, record = entry.apply(frames, params, size=16, pairs=pairs)
            assert out.shape == (3 * regions,) + ((2,) if pairs else ()) + (16, 16, 3) and out.dtype == np.uint8
            again, _ = entry.apply(frames, params, size=16, pairs=pairs)
            np.testing.assert_array_equal(out, again)
            assert isinstance(record, dict) and np.array_equal(frames, before)
    with pytest.raises(ValueError, match="next frame"):
        get_transform("motion_crop").apply(frames[:, 0], {"fraction": 0.5}, size=16, pairs=False)
    with pytest.raises(ValueError, match="cannot be cut into 40x40"):
        get_transform("tiles").apply(frames[:, 0], {"grid": 40}, size=16, pairs=False)


# --------------------------------------------------------------------------- keys and parameters


def test_cache_keys_differ_per_view_and_per_view_parameter():
    base = FeatureStream("flow", "none", 16)
    assert base.key == "flow-none-T16-S112-identity"
    assert base.with_transform("hflip").key == "flow-none-T16-S112-hflip"
    keys = {
        base.key,
        base.with_view("motion_crop").key,
        base.with_view("motion_crop", fraction=0.25).key,
        base.with_view("motion_crop", fraction=0.125).key,
        base.with_view("tiles").key,
        base.with_view("tiles", grid=3).key,
    }
    assert len(keys) == 6
    assert base.with_view("motion_crop").key == "flow-none-T16-S112-motion_crop-f0.50"
    assert base.with_view("motion_crop", fraction=0.125).key.endswith("motion_crop-f0.125")  # never rounded together
    assert base.with_view("tiles").key == "flow-none-T16-S112-tiles-2x2" == base.with_transform("tiles").key
    assert base.with_view("tiles", pooling="mean").key == base.with_view("tiles").key  # pooled on loading
    assert base.with_view("tiles").with_transform("identity") == base  # back to the clean stream
    assert base.with_view("tiles").describe()["view_params"] == {"grid": 2, "pooling": "max"}


def test_view_parameters_come_from_the_run_and_are_checked():
    base = FeatureStream("flow", "none", 16)
    run = {"motion_crop_fraction": 0.3, "tiles_grid": 3, "tile_pooling": "mean"}
    assert view_params_from(run, "tiles") == {"grid": 3, "pooling": "mean"}
    assert view_params_from({}, "motion_crop") == {"fraction": 0.5}  # schema defaults
    assert base.with_view("motion_crop", run).key.endswith("motion_crop-f0.30")
    assert base.with_view("tiles", run, grid=4).key.endswith("tiles-4x4")  # keywords win over the run's
    for name, params, match in (
        ("motion_crop", {"fraction": 0}, r"fraction must be a number in \(0, 1\]"),
        ("motion_crop", {"fraction": 1.5}, r"fraction must be a number in \(0, 1\]"),
        ("motion_crop", {"size": 2}, r"unknown parameter\(s\) \['size'\]"),
        ("tiles", {"grid": 1}, "grid must be an integer >= 2"),
        ("tiles", {"grid": 2.0}, "grid must be an integer >= 2"),
        ("tiles", {"pooling": "median"}, "pooling must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            base.with_view(name, **params)
    with pytest.raises(
        ValueError,
        match=r"'hflip' is not a stream view; stream views: "
        r"\['motion_crop', 'motion_image', 'motion_image_crop', 'tiles'\]",
    ):
        base.with_view("hflip")
    with pytest.raises(ValueError, match="need a stream view"):
        FeatureStream("flow", "none", 16, view_params=(("grid", 2),))


def test_the_schema_declares_the_view_parameters():
    from nexara_lib.config import SCHEMA, ParamError, coerce

    assert (SCHEMA["motion_crop_fraction"].default, SCHEMA["tiles_grid"].default, SCHEMA["tile_pooling"].default) == (
        0.5,
        2,
        "max",
    )
    assert all(SCHEMA[k].stage == "features" for k in ("motion_crop_fraction", "tiles_grid", "tile_pooling"))
    assert coerce("motion_crop_fraction", 1, "test") == 1.0
    for key, bad in (
        ("motion_crop_fraction", 0.0),
        ("motion_crop_fraction", 1.01),
        ("tiles_grid", 1),
        ("tile_pooling", "median"),
    ):
        with pytest.raises(ParamError):
            coerce(key, bad, "test")


# --------------------------------------------------------------------------- executors


def test_decoder_processes_ray_chunks_and_one_process_agree_for_both_views(clips, tmp_path):
    for view in ("motion_crop", "tiles"):
        stream = FeatureStream("flow", "none", T, 48).with_view(view)
        here = extract_features(clips, stream, tmp_path / "here", workers=0, progress=False)
        pool = extract_features(clips, stream, tmp_path / "pool", workers=2, batch_size=10, progress=False)
        assert here["computed"] == pool["computed"] == 4
        for job in _jobs(clips, stream):
            a = np.load(Path(here["cache_dir"]) / job.name)
            np.testing.assert_array_equal(a, np.load(Path(pool["cache_dir"]) / job.name))
            assert a.shape == (T, stream.cached_dim)
        # the Ray worker's chunk runner (the same code a Ray task runs), in this process
        jobs = _jobs(clips, stream)
        results, _ = encode_chunk(create_backbone("flow", "none", 48), list(enumerate(jobs)), 7)
        for index, feats, error, _ in results:
            assert error is None
            np.testing.assert_array_equal(feats.astype(np.float16), np.load(Path(here["cache_dir"]) / jobs[index].name))


# --------------------------------------------------------------------------- real footage


@pytest.mark.realdata
def test_views_on_a_real_cctv_clip(tmp_path, real_fight_clip):
    clip = real_fight_clip
    manifest = pd.DataFrame([{"clip_id": clip.name, "path": str(clip), "label": 1, "frames": 0}])
    base = FeatureStream("mobilenet_v1_tflite", "imagenet", 4)
    crop = extract_features(manifest, base.with_view("motion_crop"), tmp_path, workers=0, progress=False)
    tiled = extract_features(manifest, base.with_view("tiles"), tmp_path, workers=0, progress=False)
    assert crop["computed"] == tiled["computed"] == 1 and not crop["failed"] and not tiled["failed"]
    record = read_clip_records(crop["cache_dir"]).iloc[0]
    assert 0 <= record["motion_fallback_frames"] <= 4
    x_crop, _, _ = base.with_view("motion_crop").load(manifest, tmp_path)
    x_tiles, _, _ = base.with_view("tiles").load(manifest, tmp_path)
    assert x_crop.shape == x_tiles.shape == (1, 4, 1024) and x_crop.std() > 0 and x_tiles.std() > 0
