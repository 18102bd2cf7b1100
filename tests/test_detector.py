"""The streaming detector end to end on real clips written with OpenCV and scripted captures: live scores equal
offline extraction + model, grids batch their cells, and every bad input ends in a recorded state or a clear
message, never a probability made up."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from capture_fakes import FAIL, FakeCapture, FakeClock, opener_of
from video_utils import decode_all

from nexara_lib.deploy.alerts import AlarmPolicy, EventLog
from nexara_lib.deploy.detector import Detector, DetectorSettings
from nexara_lib.deploy.head import HeadError, KerasHead
from nexara_lib.deploy.sources import SourceSpec, expand_sources
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.features.extract import extract_features
from nexara_lib.features.stream import FeatureStream
from nexara_lib.training.models import create_sequence_model, model_defaults

T, FPS, N = 6, 20.0, 40
FLOW = FeatureStream("flow", "none", T)


def scene(i: int, size=(96, 72), seed=0) -> np.ndarray:
    """A BGR frame: a textured background and two squares moving differently (optical flow sees them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    frame = np.tile(np.linspace(30, 140, w, dtype=np.uint8), (h, 1))[..., None].repeat(3, 2).copy()
    frame[::7] = rng.integers(0, 255, (len(frame[::7]), w, 3), dtype=np.uint8)
    x = (3 * i) % (w - 20)
    frame[10:30, x : x + 20] = (40, 200, 250)
    y = (2 * i) % (h - 16)
    frame[y : y + 16, w - 30 : w - 14] = (250, 60, 30)
    return frame


def write_clip(path, n=N, fps=FPS, size=(96, 72), seed=0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        writer.write(scene(i, size, seed))
    writer.release()
    return path


def head_for(d: int, seed: int = 0) -> KerasHead:
    import keras

    keras.utils.set_random_seed(seed)
    model = create_sequence_model("pooled_mlp", (T, d), **{**model_defaults("pooled_mlp"), "pooled_hidden_units": 8})
    for w in model.weights:  # visible weights, so every feature matters
        if len(w.shape) == 2:
            w.assign(np.random.default_rng(seed).normal(0, 0.3, w.shape).astype("float32"))
    return KerasHead(model)


def settings(window_s=N / FPS, stride=1.0, k=1, n=1, align_windows=False, **kw) -> DetectorSettings:
    """Unaligned by default: windows of exactly ``window_s`` (a whole clip for the parity checks)."""
    return DetectorSettings(
        window_s=window_s,
        stride=stride,
        frames_per_window=T,
        policy=AlarmPolicy(on_threshold=0.5, off_threshold=0.4, k=k, n=n, cooldown_s=0.0),
        align_windows=align_windows,
        **kw,
    )


def offline(path, streams, tmp_path):
    """The clip's features as extraction caches them, concatenated over the streams."""
    manifest = pd.DataFrame([{"clip_id": "c", "path": str(path), "label": 1, "frames": N}])
    parts = []
    for stream in streams:
        extract_features(manifest, stream, tmp_path / "cache", workers=0, progress=False)
        parts.append(stream.load(manifest, tmp_path / "cache")[0])
    return np.concatenate(parts, axis=2)


@pytest.mark.parametrize(
    "streams", [[FLOW], [FLOW, FLOW.with_view("motion_crop")]], ids=["identity", "identity+motion_crop"]
)
def test_live_scores_equal_offline_extraction_plus_model(tmp_path, streams):
    clip = write_clip(tmp_path / "clip.mp4")
    features = WindowFeatures(streams)
    head = head_for(features.feature_dim)
    x = offline(clip, streams, tmp_path)
    detector = Detector(head, features, settings())
    summary = detector.run(expand_sources([str(clip)]))
    scored = [w for w in detector.windows if w.state == "scored"]
    assert len(scored) == 1 and summary["sources"][0]["status"] == "ok"
    want = float(head.predict(x)[0])
    assert abs(scored[0].score - want) <= 1e-4


def test_overlapping_windows_share_frames_and_keep_their_order(tmp_path):
    clip = write_clip(tmp_path / "long.mp4", n=120)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    detector.run(expand_sources([str(clip)]))
    starts = [w.start_t for w in detector.windows]
    assert starts == sorted(starts) and len(starts) == (120 - 20) // 10 + 1
    assert np.allclose(np.diff(starts), 0.5)
    assert features.frames < len(starts) * T  # positions shared by overlapping windows are encoded once


def test_a_grid_scores_every_cell_on_its_own_in_batched_calls(tmp_path):
    path = tmp_path / "grid.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (192, 144))
    for i in range(N):
        picture = np.zeros((144, 192, 3), np.uint8)
        picture[:72, :96] = scene(i, seed=1)
        picture[:72, 96:] = scene(i + 7, seed=2)
        picture[72:, :96] = scene(0, seed=3)  # a frozen camera
        # bottom right stays black: no signal
        writer.write(picture)
    writer.release()
    features = WindowFeatures([FLOW])
    with EventLog(tmp_path / "events.jsonl") as log:
        detector = Detector(head_for(features.feature_dim), features, settings(grid=(2, 2), min_cell=64), log)
        summary = detector.run(expand_sources([str(path)]))
    cells = {c["cell"]: c for c in summary["sources"][0]["cells"]}
    assert set(cells) == {"r1c1", "r1c2", "r2c1", "r2c2"}
    states = {w.cell: w.state for w in detector.windows}
    assert states["r1c1"] == states["r1c2"] == "scored"
    assert states["r2c1"] == states["r2c2"] == "no_signal"
    assert cells["r2c2"]["status"] == "no signal"
    scores = {w.cell: w.score for w in detector.windows}
    assert scores["r1c1"] != scores["r1c2"]
    assert features.calls <= T + 1 and features.frames == 4 * T  # one backbone call per sampled frame, all cells in it
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "status"


def test_a_grid_too_fine_for_the_picture_is_a_clear_error(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(grid=(3, 3), min_cell=64))
    summary = detector.run(expand_sources([str(clip)]))
    source = summary["sources"][0]
    assert source["status"] == "error" and "smaller than the 64 px minimum" in source["message"]
    assert detector.windows == []


def test_unopenable_and_short_sources_are_reported_and_others_go_on(tmp_path):
    good = write_clip(tmp_path / "good.mp4")
    write_clip(tmp_path / "short.mp4", n=12)  # found by the folder scan
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings())
    summary = detector.run(expand_sources([str(tmp_path)]))
    by_name = {s["source"]: s for s in summary["sources"]}
    assert by_name["broken.mp4"]["status"] == "cannot open" and "broken.mp4" in by_name["broken.mp4"]["message"]
    assert (
        by_name["short.mp4"]["status"] == "too short"
        and "shorter than the 2.0 s window" in by_name["short.mp4"]["message"]
    )
    assert by_name["good.mp4"]["status"] == "ok"
    assert [w.source for w in detector.windows] == ["good.mp4"]
    assert good.exists()


def _frames(n, start=0, step_ms=50.0, offset_ms=0.0, size=(72, 96)):
    return [(scene(i, (size[1], size[0])), offset_ms + i * step_ms) for i in range(start, start + n)]


def test_a_dropped_stream_reconnects_and_its_gap_is_unknown_not_zero():
    clock = FakeClock()
    first = FakeCapture([f for f, _ in _frames(60)] + [FAIL], fps=FPS, clock=clock, step=0.05)
    second = FakeCapture([f for f, _ in _frames(60, start=60)], fps=FPS, clock=clock, step=0.05)
    sleeps = []
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run(
        [SourceSpec("camera 0", 0, True)],
        opener=opener_of(first, None, second),
        sleep=lambda s: (sleeps.append(s), clock.advance(s)),
        clock=clock,
        queue_frames=1000,
    )  # a scripted camera delivers instantly: keep every frame
    source = summary["sources"][0]
    assert sleeps[:2] == [0.5, 1.0]  # back-off doubles
    assert [g["reason"] for g in source["gaps"]] == ["stream dropped; reconnected after 2 attempts"]
    states = [w.state for w in detector.windows]
    assert "gap" in states and states.count("scored") >= 6
    assert all(w.score is None for w in detector.windows if w.state == "gap")


def test_a_stream_that_never_comes_back_is_dropped_with_a_message():
    first = FakeCapture([f for f, _ in _frames(30)] + [FAIL], fps=FPS)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run(
        [SourceSpec("camera 0", 0, True)], opener=opener_of(first), sleep=lambda s: None, queue_frames=1000
    )
    source = summary["sources"][0]
    assert source["status"] == "dropped" and source["message"]


def test_bad_frames_timestamp_jumps_and_resolution_changes_are_survived():
    script = _frames(30)
    script[5] = (None, 250.0)  # an empty read
    script[9] = (np.zeros((0, 0, 3), np.uint8), 450.0)  # zero-size
    script[12] = (np.zeros((72, 96, 2), np.uint8), 600.0)  # two channels: unusable
    script[14] = (cv2.cvtColor(script[14][0], cv2.COLOR_BGR2GRAY), 700.0)  # grey: converted
    script += _frames(30, start=30, offset_ms=10_000.0)  # a 10 s timestamp jump
    script += _frames(30, start=60, offset_ms=12_000.0, size=(144, 192))  # the camera switches resolution
    cap = FakeCapture(script, fps=FPS)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run([SourceSpec("clip.mp4", "clip.mp4", False)], opener=opener_of(cap))
    source = summary["sources"][0]
    assert source["stats"]["bad_frames"] == 3 and source["stats"]["converted"] >= 1
    assert any("jump" in g["reason"] for g in source["gaps"])
    assert any(e.get("event") == "resolution" for e in source["events"])
    gaps = [w for w in detector.windows if w.state == "gap"]
    assert gaps and all(w.score is None for w in gaps)
    scored = [w for w in detector.windows if w.state == "scored"]
    assert any(w.start_t >= 12.0 for w in scored)  # scoring goes on after the resolution change
    assert all(b.start_t > a.start_t for a, b in zip(detector.windows, detector.windows[1:], strict=False))


def test_missing_fps_is_estimated_and_variable_rate_windows_still_score():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(30, 70, size=80))
    cap = FakeCapture([(scene(i), float(t)) for i, t in enumerate(times)], fps=0.0)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run([SourceSpec("vfr.mp4", "vfr.mp4", False)], opener=opener_of(cap))
    source = summary["sources"][0]
    assert source["fps_source"] == "timestamps" and 14 < source["fps"] < 26
    assert sum(w.state == "scored" for w in detector.windows) >= 4


def test_no_fps_and_no_timestamps_is_a_clear_error():
    cap = FakeCapture([(scene(i), 0.0) for i in range(40)], fps=0.0)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings())
    summary = detector.run([SourceSpec("nofps.mp4", "nofps.mp4", False)], opener=opener_of(cap))
    source = summary["sources"][0]
    assert source["status"] == "cannot open" and "--fps" in source["message"]


def test_a_head_failure_is_an_error_state_never_a_probability(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", n=80)
    features = WindowFeatures([FLOW])
    head = head_for(features.feature_dim)

    class Broken:
        T, D, variant = head.T, head.D, "broken"

        def predict(self, x):
            raise HeadError("interpreter failed: tensor allocation")

    detector = Detector(Broken(), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run(expand_sources([str(clip)]))
    assert detector.windows and all(w.state == "error" and w.score is None for w in detector.windows)
    assert "tensor allocation" in detector.windows[0].note
    assert summary["sources"][0]["cells"][0]["status"] == "error"


def test_more_than_half_unknown_windows_make_a_source_stale():
    script = []
    for burst in range(4):  # 1.2 s of frames, then an 8 s hole, four times
        script += _frames(24, start=24 * burst, offset_ms=burst * 9_000.0)
    cap = FakeCapture(script, fps=FPS)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run([SourceSpec("flaky.mp4", "flaky.mp4", False)], opener=opener_of(cap))
    assert summary["sources"][0]["cells"][0]["status"] == "stale"


def test_an_export_for_another_stream_set_is_refused():
    features = WindowFeatures([FLOW])
    head = head_for(features.feature_dim + 3)
    with pytest.raises(ValueError, match="re-run `nexara export"):
        Detector(head, features, settings())


def test_memory_holds_open_windows_only(tmp_path):
    cap = FakeCapture([scene(i % 40) for i in range(1500)], fps=FPS)
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    held = []
    original = detector._complete

    def spy(state, done, arrived):
        original(state, done, arrived)
        held.append(state.products.size + len(state.sampler.decided))

    detector._complete = spy
    detector.run([SourceSpec("long.mp4", "long.mp4", False)], opener=opener_of(cap))
    assert len(detector.windows) > 100
    assert max(held) <= 6 * T and max(held[-40:]) <= max(held[:40])  # features, thumbnails, picked frames: two windows


def test_the_annotated_video_has_every_frame_and_marks_alarms(tmp_path):
    from nexara_lib.deploy.annotate import Annotator

    clip = write_clip(tmp_path / "clip.mp4", n=80)
    features = WindowFeatures([FLOW])
    head = head_for(features.feature_dim)
    always = DetectorSettings(
        window_s=1.0,
        stride=0.5,
        frames_per_window=T,
        policy=AlarmPolicy(on_threshold=0.0, off_threshold=0.0, k=1, n=1, cooldown_s=0.0),
    )
    detector = Detector(head, features, always, annotator=Annotator(tmp_path / "out"))
    detector.run(expand_sources([str(clip)]))
    video = tmp_path / "out" / "clip.annotated.mp4"
    assert video.exists() and not list((tmp_path / "out").glob(".*tmp*"))
    frames = decode_all(video, rgb=False)
    assert len(frames) == 80 and frames[0].shape == (72, 96, 3)
    red = frames[-1][:, :3, 2].astype(int) - frames[-1][:, :3, 1].astype(int)  # the alarm frame's left border
    assert red.mean() > 100


def test_recordings_are_read_one_after_another_and_cameras_side_by_side():
    caps = [FakeCapture([scene(i) for i in range(30)], fps=FPS) for _ in range(4)]
    open_counts = []

    def opener(uri):
        cap = caps[len(open_counts)]
        open_counts.append(sum(c.reads > 0 and not c.released for c in caps))
        return cap

    specs = [SourceSpec(f"rec{k}.mp4", f"rec{k}.mp4", False) for k in range(4)]
    features = WindowFeatures([FLOW])
    detector = Detector(head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5))
    summary = detector.run(specs, opener=opener)
    assert [s["source"] for s in summary["sources"]] == ["rec0.mp4", "rec1.mp4", "rec2.mp4", "rec3.mp4"]
    assert max(open_counts) == 0  # each recording opened after the previous one was closed
    assert all(c.released for c in caps) and {w.source for w in detector.windows} == {s.name for s in specs}


def test_a_camera_in_back_off_does_not_hold_up_the_other_cameras():
    import threading

    gate = threading.Event()

    class Stuck(FakeCapture):
        def read(self):  # a camera whose reads hang until released, like a stream in trouble
            gate.wait(5.0)
            return False, None

    clock = FakeClock()
    good = FakeCapture([scene(i) for i in range(60)], fps=FPS, clock=clock, step=0.05)
    caps = {"bad": Stuck([], fps=FPS), "good": good}
    seen = []

    def opener(uri):
        return caps[uri]

    features = WindowFeatures([FLOW])
    detector = Detector(
        head_for(features.feature_dim), features, settings(window_s=1.0, stride=0.5, reconnect_attempts=0)
    )
    original = detector._take

    def take(state, frame):
        seen.append(state.spec.name)
        if len(seen) == 60:
            gate.set()  # every frame of the good camera came while the bad one still hung
        original(state, frame)

    detector._take = take
    detector.run(
        [SourceSpec("bad", "bad", True), SourceSpec("good", "good", True)],
        opener=opener,
        sleep=lambda s: None,
        queue_frames=1000,
        clock=clock,
    )
    assert seen[:60] == ["good"] * 60
    assert any(w.source == "good" and w.state == "scored" for w in detector.windows)
