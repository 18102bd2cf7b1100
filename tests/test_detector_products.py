"""The detector's shared per-frame products: every stream view (motion crop, motion images, tiles) computed
once per sampled frame and reused by every window and stream, with live features equal to extraction's to the
bit: on a file with repeated frames, on the cells of a grid with overlapping windows, and on a real clip."""

import cv2
import numpy as np
import pandas as pd
import pytest
from capture_fakes import FakeCapture, opener_of

from nexara_lib.deploy.alerts import AlarmPolicy
from nexara_lib.deploy.detector import Detector, DetectorSettings
from nexara_lib.deploy.sources import SourceSpec, expand_sources
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.features.cache import as_cached
from nexara_lib.features.clip_jobs import decode_job, sampled_indices
from nexara_lib.features.extract import _jobs, extract_features
from nexara_lib.features.stream import FeatureStream
from nexara_lib.transforms.frame_views import pool_regions, resize_square
from nexara_lib.transforms.registry import get_transform

T, FPS = 6, 20.0
BASE = FeatureStream("mobilenetv2", "none", T, 32)  # the tiny encoder below stands in for its network
VIEWS = ["identity", "motion_crop", "motion_image", "motion_image_crop"]


class TinyEncoder:
    """A fixed random projection of 32x32 RGB frames (every second pixel) to 1280 features (mobilenetv2's D):
    fast and deterministic."""

    def __init__(self, seed=0):
        self.w = np.random.default_rng(seed).normal(0, 0.1, (16 * 16 * 3, 1280)).astype(np.float32)

    def __call__(self, frames):
        x = np.asarray(frames, np.float32)[:, ::2, ::2].reshape(len(frames), -1) / 255.0 - 0.5
        return np.tanh(np.einsum("nk,kd->nd", x, self.w))  # no BLAS threads: steady on a busy machine


class RecordingHead:
    """A head that keeps every window it scores (exact inputs) and scores their mean through a sigmoid."""

    variant = "recording"

    def __init__(self, d):
        self.T, self.D, self.seen = T, d, []

    def predict(self, x):
        self.seen.extend(np.array(row) for row in x)
        return 1 / (1 + np.exp(-x.mean(axis=(1, 2))))


def stream_of(view: str) -> FeatureStream:
    return BASE if view == "identity" else BASE.with_view(view)


def features_for(views, encoder):
    streams = [stream_of(v) for v in views]
    return WindowFeatures(streams, encoders={WindowFeatures.encoder_key(streams[0]): encoder})


def settings(window_s, stride=1.0, align_windows=False, **kw):
    """Unaligned by default: parity checks feed windows of exactly the clip's length (or of a given length)."""
    policy = AlarmPolicy(on_threshold=0.5, off_threshold=0.4, k=1, n=1, cooldown_s=0.0)
    return DetectorSettings(
        window_s=window_s, stride=stride, frames_per_window=T, policy=policy, align_windows=align_windows, **kw
    )


def scene(i: int, seed: int, size=(96, 72)) -> np.ndarray:
    """A BGR frame: a textured background and a bright square moving across it."""
    rng = np.random.default_rng(seed)
    w, h = size
    frame = cv2.GaussianBlur(rng.integers(0, 160, (h, w, 3), dtype=np.uint8), (3, 3), 0)
    x = (4 * i + 7 * seed) % (w - 20)
    frame[20:40, x : x + 20] = (60, 220, 250)
    return frame


def encoded(inputs, encoder, stream):
    """Backbone inputs through the encoder, rounded like the cache and a view's regions pooled like loading."""
    rows = as_cached(np.asarray(encoder(inputs), np.float32)).reshape(T, -1)
    return (
        pool_regions(rows[None], stream.regions, dict(stream.view_params)["pooling"])[0] if stream.regions > 1 else rows
    )


def offline_of_frames(frames_rgb, views, encoder):
    """A clip's features as extraction computes them from its decoded frames (``decode_job`` after decoding)."""
    parts = []
    n = len(frames_rgb)
    for view in views:
        stream = stream_of(view)
        indices = sampled_indices(n, T, stream.reads_next)
        if stream.view is None:
            inputs = np.stack([resize_square(frames_rgb[i], stream.size) for i in indices])
        else:
            native = frames_rgb[indices]
            if stream.reads_next:
                native = np.stack([native, frames_rgb[np.minimum(indices + 1, n - 1)]], axis=1)
            inputs, _ = get_transform(view).apply(native, dict(stream.view_params), size=stream.size, pairs=False)
        parts.append(encoded(inputs, encoder, stream))
    return np.concatenate(parts, axis=1)


def test_a_file_with_repeated_frames_scores_exactly_its_offline_features(tmp_path):
    """Every next decoded frame of a sampled even index is a copy: the motion views fall back on the neighbouring
    sampled frame, in extraction (decode_job) and live alike."""
    path = tmp_path / "doubled.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (96, 72))
    for i in range(20):
        for _ in range(2):  # 10 fps stored at 20: every frame twice
            writer.write(scene(i, seed=1))
    writer.release()
    encoder = TinyEncoder()
    views = VIEWS + ["tiles"]
    features = features_for(views, encoder)
    head = RecordingHead(features.feature_dim)
    manifest = pd.DataFrame([{"clip_id": "c", "path": str(path), "label": 1, "frames": 40}])
    parts, neighbours = [], 0
    for view in views:
        answer = decode_job(_jobs(manifest, stream_of(view))[0])
        neighbours += answer.record.get("motion_neighbour_frames", 0)
        parts.append(encoded(answer.frames, encoder, stream_of(view)))
    assert neighbours > 0  # the fallback was exercised
    detector = Detector(head, features, settings(window_s=40 / FPS))
    detector.run(expand_sources([str(path)]))
    assert [w.state for w in detector.windows] == ["scored"] and len(head.seen) == 1
    np.testing.assert_array_equal(head.seen[0], np.concatenate(parts, axis=1))


def capture(frames) -> FakeCapture:
    """A scripted source delivering ``frames`` at FPS."""
    return FakeCapture([(f, 1000.0 * i / FPS) for i, f in enumerate(frames)], fps=FPS)


def grid_pictures(n: int) -> list[np.ndarray]:
    """A 2x2 monitor: a moving camera, a camera repeating every frame, another moving camera, a black camera."""
    pictures = []
    for i in range(n):
        picture = np.zeros((144, 192, 3), np.uint8)
        picture[:72, :96] = scene(i, seed=2)
        picture[:72, 96:] = scene(i // 2, seed=3)  # every frame twice: motion falls back on the neighbour
        picture[72:, :96] = scene(i, seed=4)
        pictures.append(picture)
    return pictures


@pytest.mark.parametrize("align", [False, True], ids=["unaligned", "aligned"])
def test_grid_cells_with_overlapping_windows_score_exactly_their_cells_offline_features(align):
    pictures = grid_pictures(80)
    rgb = np.stack([cv2.cvtColor(p, cv2.COLOR_BGR2RGB) for p in pictures])
    cells = {"r1c1": rgb[:, :72, :96], "r1c2": rgb[:, :72, 96:], "r2c1": rgb[:, 72:, :96]}
    encoder = TinyEncoder(1)
    features = features_for(VIEWS, encoder)
    head = RecordingHead(features.feature_dim)
    detector = Detector(
        head, features, settings(window_s=1.0, stride=0.5, grid=(2, 2), min_cell=64, align_windows=align)
    )
    detector.run([SourceSpec("monitor", "monitor", False)], opener=opener_of(capture(pictures)))
    plan = detector.states[0].plan
    n, windows = plan.window_frames, (80 - plan.window_frames) // plan.stride_frames + 1
    assert (n, plan.stride_frames, windows, plan.aligned) == ((18, 10, 7, True) if align else (20, 10, 7, False))
    scored = [w for w in detector.windows if w.state == "scored"]
    assert {w.cell for w in scored} == set(cells) and len(scored) == 3 * windows == len(head.seen)
    assert {w.state for w in detector.windows if w.cell == "r2c2"} == {"no_signal"}
    for window, x in zip(scored, head.seen, strict=True):  # a window of n frames, as extraction reads a clip
        start = int(round(window.start_t * FPS))
        want = offline_of_frames(cells[window.cell][start : start + n], VIEWS, encoder)
        np.testing.assert_array_equal(x, want, err_msg=f"{window.cell} at {window.start_t} s")
    # positions shared by overlapping windows, and the motion crop where nothing moved, are encoded once
    assert features.frames < len(VIEWS) * T * windows * 4, features.frames  # windows x 4 cells x T per stream


def test_aligned_windows_encode_every_shared_frame_once_and_score_as_extraction_does():
    """identity + motion_crop (surv_dev's recipe) on a moving scene: the aligned grid's overlapping windows read
    the same products, so the backbone encodes exactly one frame per sampled position and stream (counted on the
    tiny encoder), far fewer per window than unaligned, and every window still scores its own clip's features."""
    frames = [scene(i, seed=7) for i in range(200)]
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])
    views, per_window = ["identity", "motion_crop"], {}
    for align in (False, True):
        encoder = TinyEncoder(2)
        features = features_for(views, encoder)
        head = RecordingHead(features.feature_dim)
        detector = Detector(head, features, settings(window_s=1.0, stride=0.5, align_windows=align))
        detector.run([SourceSpec("cam", "cam", False)], opener=opener_of(capture(frames)))
        plan = detector.states[0].plan
        opened = range((len(frames) - 1) // plan.stride_frames + 1)  # every window a frame reached the start of
        sampled = [{g for m in opened for g in plan.targets(m)[i] if g < len(frames)} for i in range(len(views))]
        assert features.frames == sum(len(positions) for positions in sampled), align  # one encode per position
        scored = [w for w in detector.windows if w.state == "scored"]
        assert len(scored) == (len(frames) - plan.window_frames) // plan.stride_frames + 1 == len(head.seen)
        for window, x in zip(scored, head.seen, strict=True):
            start = int(round(window.start_t * FPS))
            want = offline_of_frames(rgb[start : start + plan.window_frames], views, encoder)
            np.testing.assert_array_equal(x, want, err_msg=f"aligned={align}, window at {window.start_t} s")
        per_window[align] = features.frames / len(scored)
    shared = [plan.shared_positions(i) for i in range(len(views))]
    assert shared == [2, 3]  # of T = 6 positions (unaligned here: [0, 1]; at surv_dev's 25 fps, 2 s: [8, 8])
    assert per_window[True] <= 2 * T - sum(shared) + 1 < per_window[False], per_window  # + 1: the first window


def test_identity_is_encoded_only_where_it_samples_and_a_still_motion_crop_reuses_it(tmp_path):
    n = 40
    identity = set(sampled_indices(n, T).tolist())
    motion = set(sampled_indices(n, T, pairs=True).tolist())
    assert len(identity | motion) < 2 * T  # some positions are sampled by both
    for still, want in ((False, 2 * T), (True, len(identity | motion))):
        frames = [scene(0 if still else i, seed=5) for i in range(n)]
        features = features_for(["identity", "motion_crop"], TinyEncoder())
        detector = Detector(RecordingHead(features.feature_dim), features, settings(window_s=n / FPS))
        detector.run([SourceSpec("clip", "clip", False)], opener=opener_of(capture(frames)))
        assert [w.state for w in detector.windows] == ["no_signal" if still else "scored"]
        assert features.frames == want, still  # not identity at the motion crop's positions too


@pytest.mark.parametrize("align", [False, True], ids=["unaligned", "aligned"])
def test_pictures_are_held_only_while_a_motion_fallback_may_need_them(align):
    frames = [scene(i // 2, seed=6) for i in range(600)]  # half the next frames repeat: fallbacks all along
    features = features_for(["identity", "motion_crop", "motion_image_crop"], TinyEncoder())
    detector = Detector(
        RecordingHead(features.feature_dim), features, settings(window_s=1.0, stride=0.5, align_windows=align)
    )
    held, pictures = [], []
    original = detector._complete

    def spy(state, done, arrived):
        original(state, done, arrived)
        held.append(state.products.size + len(state.sampler.decided))
        pictures.append(sum(p.image is not None for p in state.sampler.decided.values()))

    detector._complete = spy
    detector.run([SourceSpec("long", "long", False)], opener=opener_of(capture(frames)))
    assert sum(w.state == "scored" for w in detector.windows) > 40
    half = len(held) // 2
    assert max(held[half:]) <= max(held[:half])  # flat: nothing grows with the length of the source
    assert max(pictures) <= T  # most pictures are let go as soon as their products are computed


@pytest.mark.realdata
def test_a_real_clip_scores_live_what_extraction_caches_for_every_motion_view(tmp_path, real_fight_clip):
    clip = real_fight_clip
    cap = cv2.VideoCapture(str(clip))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    manifest = pd.DataFrame([{"clip_id": "c", "path": str(clip), "label": 1, "frames": n}])
    base = FeatureStream("mobilenet_v1_tflite", "imagenet", 8)
    streams = [base, base.with_view("motion_crop"), base.with_view("motion_image_crop")]
    offline = []
    for stream in streams:
        extract_features(manifest, stream, tmp_path, workers=0, progress=False)
        offline.append(stream.load(manifest, tmp_path)[0][0])
    features = WindowFeatures(streams)
    head = RecordingHead(features.feature_dim)
    head.T = 8
    settings_8 = DetectorSettings(
        window_s=n / fps,
        stride=1.0,
        frames_per_window=8,
        policy=AlarmPolicy(on_threshold=0.5, off_threshold=0.4, k=1, n=1, cooldown_s=0.0),
        align_windows=False,  # a window of exactly the clip's length
    )
    Detector(head, features, settings_8).run(expand_sources([str(clip)]))
    assert len(head.seen) == 1
    np.testing.assert_array_equal(head.seen[0], np.concatenate(offline, axis=1))
