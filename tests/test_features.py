"""Feature extraction on real video files: cache, resume, corrupt clips, keys."""

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.features.backbones import pretrained_path
from nexara_lib.features.cache import clip_cache_name, load_features
from nexara_lib.features.extract import extract_features
from nexara_lib.features.stream import FeatureStream


def write_video(path, n_frames=12, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, size)
    x = 5
    for _ in range(n_frames):
        frame = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
        x = (x + 3 + seed) % (size[0] - 12)
        cv2.rectangle(frame, (x, 10), (x + 10, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def manifest(tmp_path):
    rows = []
    for i in range(4):
        path = write_video(tmp_path / f"clip{i}.avi", n_frames=10 + i, seed=i)
        rows.append({"clip_id": f"c/{i}", "path": str(path), "label": i % 2, "frames": 10 + i, "split": "train"})
    broken = tmp_path / "broken.avi"
    broken.write_text("not a video")
    rows.append({"clip_id": "broken", "path": str(broken), "label": 0, "frames": 10, "split": "train"})
    return pd.DataFrame(rows)


def test_extract_caches_resumes_and_skips_corrupt(manifest, tmp_path):
    cache = tmp_path / "cache"
    first = extract_features(manifest, FeatureStream("flow", "none", 5, 48), cache, progress=False)
    assert first["computed"] == 4
    assert [f["clip_id"] for f in first["failed"]] == ["broken"]
    assert first["clips_per_s"] > 0 and first["decode_s"] > 0 and first["model_s"] > 0
    files = sorted((cache / first["key"]).glob("*.npy"))
    assert len(files) == 4
    arr = np.load(files[0])
    assert arr.dtype == np.float16 and arr.shape[0] == 5

    # Resume: finished clips are not recomputed, a deleted one is.
    files[0].unlink()
    second = extract_features(manifest, FeatureStream("flow", "none", 5, 48), cache, progress=False)
    assert second["cached_before"] == 3 and second["computed"] == 1

    x, y, ids = load_features(manifest, cache / first["key"])
    assert x.shape[:2] == (4, 5) and x.dtype == np.float32
    assert ids == ["c/0", "c/1", "c/2", "c/3"] and list(y) == [0, 1, 0, 1]
    assert not list((cache / first["key"]).glob("*.tmp"))


def test_features_are_deterministic_and_move_with_content(manifest, tmp_path):
    stream = FeatureStream("flow", "none", 4, 48)
    a = extract_features(manifest.iloc[:2], stream, tmp_path / "a", progress=False)
    b = extract_features(manifest.iloc[:2], stream, tmp_path / "b", progress=False)
    xa, _, _ = load_features(manifest.iloc[:2], a["cache_dir"])
    xb, _, _ = load_features(manifest.iloc[:2], b["cache_dir"])
    np.testing.assert_array_equal(xa, xb)
    assert np.abs(xa[0] - xa[1]).max() > 0  # different clips, different features


def test_cache_key_changes_with_every_parameter():
    base = FeatureStream("flow", "none", 16).key
    assert base == "flow-none-T16-S112-identity" == FeatureStream("flow", "none", 16, 112).key  # 0 = own size
    assert base != FeatureStream("flow", "none", 20).key
    assert base != FeatureStream("flow", "none", 16, 96).key
    assert base != FeatureStream("flow", "none", 16).with_transform("hflip").key
    assert FeatureStream("resnet50v2", "imagenet", 16).key != FeatureStream("resnet50v2", "none", 16).key


def test_cache_name_tracks_file_identity():
    row = {"clip_id": "train/Fight/a b<c>.avi", "path": "/x/a.avi", "bytes": 10, "sha1": "ab"}
    name = clip_cache_name(row)
    assert "/" not in name and "<" not in name and " " not in name
    assert name != clip_cache_name({**row, "sha1": "cd"})


def test_frame_level_transform_is_cached_under_its_own_key(manifest, tmp_path):
    stream = FeatureStream("flow", "none", 4, 48)
    clean = extract_features(manifest.iloc[:2], stream, tmp_path, progress=False)
    flipped = extract_features(manifest.iloc[:2], stream.with_transform("hflip"), tmp_path, progress=False)
    assert clean["cache_dir"] != flipped["cache_dir"]
    xc, _, _ = load_features(manifest.iloc[:2], clean["cache_dir"])
    xf, _, _ = load_features(manifest.iloc[:2], flipped["cache_dir"])
    assert not np.allclose(xc, xf)


def test_load_without_cache_is_a_clear_error(manifest, tmp_path):
    with pytest.raises(ValueError, match="run feature extraction"):
        load_features(manifest, tmp_path / "empty")


@pytest.mark.realdata
def test_tflite_features_on_real_clips(tmp_path):
    model = pretrained_path("mobilenet_v1_tflite")
    root = model.parents[1] / "data" / "surv-fight-dev"
    if not model.is_file() or not root.is_dir():
        pytest.skip("shared real clips / model not present")
    paths = [root / "fight" / "fi001.mp4", root / "noFight" / "nofi001.mp4"]
    manifest = pd.DataFrame(
        [{"clip_id": p.name, "path": str(p), "label": int("fi0" in p.name), "frames": 0} for p in paths]
    )
    summary = extract_features(manifest, FeatureStream("mobilenet_v1_tflite", "imagenet", 4), tmp_path, progress=False)
    assert summary["computed"] == 2 and not summary["failed"]
    x, y, _ = load_features(manifest, summary["cache_dir"])
    assert x.shape == (2, 4, 1024) and (x >= 0).all() and x.std() > 0


def test_flow_pairs_have_a_real_next_frame_at_every_step(manifest, tmp_path):
    # The last sampled frame must not be paired with itself (a constant zero-motion step).
    summary = extract_features(manifest.iloc[:3], FeatureStream("flow", "none", 5, 48), tmp_path, progress=False)
    x, _, _ = load_features(manifest.iloc[:3], summary["cache_dir"])
    mean_magnitude = x[:, :, 0]  # first flow statistic: mean magnitude per pair
    assert (mean_magnitude[:, -1] > 0.5 * mean_magnitude[:, :-1].mean(axis=1)).all()


def test_sampled_indices_pairs_and_frame_shift():
    from nexara_lib.features.clip_jobs import sampled_indices

    assert list(sampled_indices(10, 4)) == [0, 3, 6, 9]
    assert sampled_indices(10, 4, pairs=True).max() == 8  # every sampled frame has a next frame
    from nexara_lib.transforms.registry import get_transform

    frame_shift = get_transform("frame_shift")
    shifted = frame_shift.apply(sampled_indices(10, 4), frame_shift.view_params(), span=10)
    assert list(shifted) == [2, 5, 8, 9] or list(shifted) == [1, 4, 7, 9]  # half a stride (3) later, clipped
    assert shifted.max() <= 9


def test_frame_shift_view_reads_other_frames(manifest, tmp_path):
    stream = FeatureStream("flow", "none", 4, 48)
    clean = extract_features(manifest.iloc[:2], stream, tmp_path, progress=False)
    shifted = extract_features(manifest.iloc[:2], stream.with_transform("frame_shift"), tmp_path, progress=False)
    xc, _, _ = load_features(manifest.iloc[:2], clean["cache_dir"])
    xs, _, _ = load_features(manifest.iloc[:2], shifted["cache_dir"])
    assert shifted["key"].endswith("frame_shift") and not np.allclose(xc, xs)
