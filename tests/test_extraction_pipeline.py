"""Stage 2 at decoder speed, on real video files: exact frames, decoder processes, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from video_utils import decode_all

from nexara_lib.features.cache import clip_cache_name, load_features, read_clip_records
from nexara_lib.features.clip_jobs import ClipJob, decode_job
from nexara_lib.features.extract import extract_augmented_copies, extract_features
from nexara_lib.features.local_executor import DecoderPool, FeatureBatcher
from nexara_lib.features.stream import FeatureStream
from nexara_lib.video import reader as frame_reader
from nexara_lib.video.frames import read_sampled_frames, sample_frame_indices

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight-dev"


def write_clip(path, n_frames, size=(96, 64), fourcc="MJPG", fps=15, seed=0):
    """A clip whose every frame differs (moving square + its index drawn in), so a wrong frame shows."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for i in range(n_frames):
        frame = np.roll(base, i, axis=1).copy()
        x = (i * 3) % (size[0] - 12)
        cv2.rectangle(frame, (x, 8), (x + 10, 28), (255, 255, 255), -1)
        cv2.putText(frame, str(i), (2, size[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
        writer.write(frame)
    writer.release()
    return Path(path)


def manifest_of(paths, frames=None, split="train"):
    return pd.DataFrame(
        [
            {
                "clip_id": f"clip{i}",
                "path": str(p),
                "label": i % 2,
                "split": split,
                "frames": (frames[i] if frames else 0),
            }
            for i, p in enumerate(paths)
        ]
    )


# --------------------------------------------------------------------------- exact frames


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """600 frames of MPEG-4 part 2 (keyframe every 12 frames): long gaps make seeks pay."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", 600, size=(160, 96), fourcc="mp4v", fps=30)


@pytest.mark.parametrize("t", [3, 7, 20])
def test_forced_seeks_give_the_frames_of_a_full_sequential_decode(long_clip, monkeypatch, t):
    monkeypatch.setattr(frame_reader, "SEEK_TRIAL_MS", 0.0)  # every long gap tries a seek
    reference = decode_all(long_clip)
    indices = sample_frame_indices(len(reference), t)
    frames, record = read_sampled_frames(long_clip, indices)
    assert record["seeks"] > 0 and record["strategy"] == "seek"
    assert np.array_equal(frames, reference[indices])


def test_sequential_reading_is_exact_too_and_never_seeks(long_clip):
    reference = decode_all(long_clip)
    indices = sample_frame_indices(len(reference), 20)
    frames, record = read_sampled_frames(long_clip, indices, allow_seek=False)
    assert record["seeks"] == 0 and record["strategy"] == "sequential"
    assert np.array_equal(frames, reference[indices])


def test_the_seek_choice_is_measured_per_clip(long_clip, tmp_path, monkeypatch):
    """Gaps of ~300 frames: a trial seek when grabbing through them costs more than the trial threshold."""
    _, cheap = frame_reader.read_frames_at(str(long_clip), {0, 1, 299, 599})
    grab_cost_ms = 298 * cheap.grab_ms  # measured on this clip
    monkeypatch.setattr(frame_reader, "SEEK_TRIAL_MS", grab_cost_ms * 10)
    _, stats = frame_reader.read_frames_at(str(long_clip), {0, 1, 299, 599})
    assert stats.seeks == 0  # grabbing through the gap is cheaper than the threshold: no trial
    monkeypatch.setattr(frame_reader, "SEEK_TRIAL_MS", grab_cost_ms / 10)
    _, stats = frame_reader.read_frames_at(str(long_clip), {0, 1, 299, 599})
    assert stats.seeks >= 1 and stats.grab_ms > 0 and stats.seek_ms > 0
    short = write_clip(tmp_path / "short.avi", 30)
    _, stats = frame_reader.read_frames_at(str(short), set(range(0, 30, 3)))
    assert stats.seeks == 0 and stats.grabs == 28


def test_a_seek_that_lands_on_the_wrong_frame_falls_back_to_grabbing(long_clip, monkeypatch):
    monkeypatch.setattr(frame_reader, "SEEK_TRIAL_MS", 0.0)
    monkeypatch.setattr(frame_reader._Capture, "_expected_ms", lambda self, index: -1e9)  # no landing is right
    reference = decode_all(long_clip)
    frames, stats = frame_reader.read_frames_at(str(long_clip), {0, 1, 300, 599})
    assert stats.seek_fallbacks == 1 and stats.seeks == 0
    assert all(np.array_equal(frames[i], reference[i]) for i in (0, 1, 300, 599))


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/surv-fight-dev")
def test_real_h264_clips_with_forced_seeks_match_a_full_decode(monkeypatch):
    monkeypatch.setattr(frame_reader, "SEEK_TRIAL_MS", 0.0)
    monkeypatch.setattr(frame_reader, "MIN_SEEK_GAP", 2)
    for clip in sorted(REAL.glob("*/*.mp4"))[::40]:
        reference = decode_all(clip)
        indices = sample_frame_indices(len(reference), 8)
        frames, _ = read_sampled_frames(clip, indices, size=112)
        expected = np.stack([cv2.resize(f, (112, 112), interpolation=cv2.INTER_AREA) for f in reference[indices]])
        assert np.array_equal(frames, expected), clip.name


def test_short_clip_is_padded_and_recorded(tmp_path):
    clip = write_clip(tmp_path / "short.avi", 5)
    answer = decode_job(ClipJob("short.npy", "short", str(clip), 5, 8, 32, False))
    assert answer.error is None and answer.frames.shape == (8, 32, 32, 3)
    assert answer.record["padded"] and answer.record["distinct_frames"] == 5


def test_header_overcount_is_remapped_and_recorded(tmp_path):
    clip = write_clip(tmp_path / "c.avi", 20)
    answer = decode_job(ClipJob("c.npy", "c", str(clip), 50, 6, 32, False))  # the manifest claims 50 frames
    assert answer.error is None and answer.record["remapped"] and answer.record["frames_decoded"] == 20
    reference = decode_all(clip)
    expected = np.stack(
        [cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in reference[sample_frame_indices(20, 6)]]
    )
    assert np.array_equal(answer.frames, expected)


def test_unreadable_clip_is_an_answer_not_an_exception(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(os.urandom(2000))
    answer = decode_job(ClipJob("bad.npy", "bad", str(bad), 10, 4, 32, False))
    assert answer.frames is None and "cannot read video" in answer.error


def test_memory_holds_only_the_sampled_frames(long_clip):
    """Reading 4 frames of a 600-frame clip allocates a few frames, never the clip (numpy allocations traced)."""
    import tracemalloc

    frame_bytes = 160 * 96 * 3
    tracemalloc.start()
    try:
        frames, _ = frame_reader.read_frames_at(str(long_clip), {0, 200, 400, 599}, allow_seek=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(frames) == [0, 200, 400, 599]
    assert peak < 20 * frame_bytes, f"peak {peak} bytes: {peak / frame_bytes:.0f} frames held (the clip has 600)"


# --------------------------------------------------------------------------- batching


def test_batcher_calls_the_backbone_with_one_batch_shape_and_reassembles_clips():
    calls = []

    def encode(batch):
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float32)

    batcher = FeatureBatcher(encode, batch_frames=4)
    clips = {k: np.full((3, 2, 2, 3), k, np.uint8) for k in range(5)}  # 15 frames: 3 full batches + 3
    done = []
    for key, frames in clips.items():
        done += batcher.add(key, frames)
    done += batcher.flush()
    assert [k for k, _ in done] == list(range(5))
    assert all(np.array_equal(f, np.full((3, 2), k, np.float32)) for k, f in done)
    assert set(calls) == {(4, 2, 2, 3)} and len(calls) == 4  # the last batch is padded, not shorter


# --------------------------------------------------------------------------- decoder processes


@pytest.fixture
def clips(tmp_path):
    paths = [write_clip(tmp_path / f"c{i}.avi", 12 + 3 * i, seed=i) for i in range(6)]
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(os.urandom(4000))
    return paths + [bad]


def test_decoder_processes_give_the_same_features_as_one_process(clips, tmp_path):
    manifest = manifest_of(clips)
    stream = FeatureStream("flow", "none", 5, 48)
    serial = extract_features(manifest, stream, tmp_path / "a", workers=0, progress=False)
    piped = extract_features(manifest, stream, tmp_path / "b", workers=2, progress=False)
    assert serial["computed"] == piped["computed"] == 6
    assert [f["clip_id"] for f in piped["failed"]] == ["clip6"]
    assert piped["wait_s"] >= 0 and piped["model_s"] > 0 and piped["decode_s"] > 0
    xa, _, ida = load_features(manifest, Path(serial["cache_dir"]))
    xb, _, idb = load_features(manifest, Path(piped["cache_dir"]))
    assert ida == idb and np.array_equal(xa, xb)
    records = read_clip_records(piped["cache_dir"])
    assert len(records) == 6 and set(records["strategy"]) == {"sequential"}


def test_known_failures_are_skipped_on_rerun_unless_retried(clips, tmp_path):
    manifest = manifest_of(clips)
    common = dict(stream=FeatureStream("flow", "none", 5, 48), cache_root=tmp_path / "c", workers=0, progress=False)
    first = extract_features(manifest, **common)
    failures = json.loads((Path(first["cache_dir"]) / "failures.json").read_text())
    assert [v["clip_id"] for v in failures.values()] == ["clip6"]
    again = extract_features(manifest, **common)
    assert again["computed"] == 0 and [f["clip_id"] for f in again["failed"]] == ["clip6"]
    assert again["decode_s"] == 0  # the known-bad file was not decoded again
    write_clip(clips[-1], 12)  # the file gets fixed: a retry computes it and clears the failure
    retried = extract_features(manifest, retry_failed=True, **common)
    assert retried["computed"] == 1 and not retried["failed"]
    assert json.loads((Path(first["cache_dir"]) / "failures.json").read_text()) == {}


def test_a_decoder_process_that_dies_costs_only_its_clip(tmp_path):
    paths = [write_clip(tmp_path / f"d{i}.avi", 300, size=(320, 240), seed=i) for i in range(4)]
    jobs = [ClipJob(f"d{i}.npy", f"d{i}", str(p), 300, 300, 64, False) for i, p in enumerate(paths)]
    pool = DecoderPool(jobs, workers=2, queue_clips=1)
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline:  # kill a decoder while it holds a clip
        for wid, proc in enumerate(pool.procs):
            if pool.current[wid] >= 0:
                killed = int(pool.current[wid])
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.005)
    answers = dict(pool)
    assert killed is not None and sorted(answers) == [0, 1, 2, 3]
    assert "crashed" in answers[killed].error
    assert all(answers[i].frames is not None for i in answers if i != killed)


# --------------------------------------------------------------------------- resume after kill -9

KILL_SCRIPT = """
import sys, pandas as pd
from nexara_lib.features.extract import extract_features
from nexara_lib.features.stream import FeatureStream
extract_features(pd.read_csv(sys.argv[1]), FeatureStream("flow", "none", 8, 64), sys.argv[2], workers=1, batch_size=8,
                 progress=False)
"""


@pytest.mark.slow
def test_kill_9_mid_extraction_then_rerun_matches_an_uninterrupted_run(tmp_path):
    paths = [write_clip(tmp_path / f"k{i}.avi", 150, size=(320, 240), seed=i) for i in range(14)]
    manifest = manifest_of(paths, frames=[150] * 14)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    cache = tmp_path / "killed"
    stream = FeatureStream("flow", "none", 8, 64)
    key_dir = stream.cache_dir(cache)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "manifest.csv"), str(cache)], start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(key_dir.glob("*.npy"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in key_dir.glob("*.npy")}
    assert 3 <= len(done_before) < 14, "the kill should land mid-run"

    resumed = extract_features(manifest, stream, cache, workers=1, batch_size=8, progress=False)
    assert resumed["cached_before"] == len(done_before)
    assert resumed["computed"] == 14 - len(done_before)  # no clip computed twice
    clean = extract_features(manifest, stream, tmp_path / "clean", workers=1, batch_size=8, progress=False)
    xa, _, ida = load_features(manifest, key_dir)
    xb, _, idb = load_features(manifest, Path(clean["cache_dir"]))
    assert ida == idb and len(ida) == 14 and np.array_equal(xa, xb)
    names = list(read_clip_records(key_dir)["file"])  # a kill between a record and its entry: the rerun's record
    assert sorted(names) == sorted(clip_cache_name(row) for _, row in manifest.iterrows())  # each clip once
    assert not list(key_dir.glob(".*.tmp"))


# --------------------------------------------------------------------------- augmentation copies


def test_augmented_copies_are_keyed_seeded_and_differ_from_clean(clips, tmp_path):
    manifest = manifest_of(clips[:4])
    stream = FeatureStream("flow", "none", 5, 48)
    clean = extract_features(manifest, stream, tmp_path / "a", progress=False, workers=0)
    ops = ["hflip", "brightness_contrast", "rotate_zoom", "temporal_jitter"]
    first = extract_augmented_copies(
        manifest, stream, tmp_path / "a", copies=2, ops=ops, seed=7, progress=False, workers=0
    )
    again = extract_augmented_copies(
        manifest, stream, tmp_path / "b", copies=2, ops=ops, seed=7, progress=False, workers=0
    )
    keys = {clean["key"], first[0]["key"], first[1]["key"]}
    assert len(keys) == 3 and all(s["computed"] == 4 for s in first)
    x_clean = load_features(manifest, Path(clean["cache_dir"]))[0]
    x1 = load_features(manifest, Path(first[0]["cache_dir"]))[0]
    x2 = load_features(manifest, Path(first[1]["cache_dir"]))[0]
    assert not np.array_equal(x1, x_clean) and not np.array_equal(x1, x2)
    assert np.array_equal(x1, load_features(manifest, Path(again[0]["cache_dir"]))[0])  # same seed, same copy
    records = read_clip_records(first[0]["cache_dir"])
    assert set(records["augmentation"].iloc[0]) == set(ops)
    meta = json.loads((Path(first[0]["cache_dir"]) / "meta.json").read_text())
    assert meta["augmentation"] == {"ops": ops, "copy": 1, "seed": 7}


def test_unknown_augmentation_op_fails_before_any_work(clips, tmp_path):
    with pytest.raises(ValueError, match="hflip"):
        extract_augmented_copies(
            manifest_of(clips[:2]), FeatureStream("flow", "none", 4, 48), tmp_path, copies=1, ops=["mirror"], seed=0
        )


def test_bad_arguments_are_clear(clips, tmp_path):
    manifest = manifest_of(clips[:2])
    stream = FeatureStream("flow", "none", 4, 48)
    with pytest.raises(ValueError, match="executor"):
        extract_features(manifest, stream, tmp_path, executor="spark")
    with pytest.raises(ValueError, match="workers"):
        extract_features(manifest, stream, tmp_path, workers=-1)
    with pytest.raises(ValueError, match="lacks column"):
        extract_features(manifest.drop(columns=["path"]), stream, tmp_path)
    with pytest.raises(TypeError, match="FeatureStream"):
        extract_features(manifest, "flow", tmp_path)
    with pytest.raises(ValueError, match="positive integer"):
        FeatureStream("flow", "none", 0)
    with pytest.raises(ValueError, match="acts on features"):
        extract_features(manifest, stream.with_transform("temporal_shift"), tmp_path)


def test_a_read_record_whose_entry_was_never_committed_is_skipped_then_replaced(tmp_path):
    paths = [write_clip(tmp_path / f"r{i}.avi", 40, size=(160, 120), seed=i) for i in range(3)]
    manifest = manifest_of(paths, frames=[40] * 3)
    stream = FeatureStream("flow", "none", 4, 64)
    key_dir = Path(
        extract_features(manifest, stream, tmp_path / "c", workers=1, batch_size=4, progress=False)["cache_dir"]
    )
    victim = sorted(key_dir.glob("*.npy"))[0]
    victim.unlink()  # as if killed after the clip's read record was appended, before its entry was committed
    assert victim.name not in set(read_clip_records(key_dir)["file"])
    again = extract_features(manifest, stream, tmp_path / "c", workers=1, batch_size=4, progress=False)
    assert again["computed"] == 1 and victim.is_file()
    assert sorted(read_clip_records(key_dir)["file"]) == sorted(p.name for p in key_dir.glob("*.npy"))
