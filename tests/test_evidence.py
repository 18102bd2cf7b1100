"""Alert evidence (issue 21, item 3): a clip of the alert's camera (cell) around the alarm, a snapshot and its window
scores, written by a thread that never holds a live detector up, under a disk cap that deletes the oldest first."""

import json
import threading

import cv2
import numpy as np
import pytest
from field_utils import FPS, alert_event, picture, play, write_recording

from nexara_lib.deploy import evidence as evidence_module
from nexara_lib.deploy.evidence import EvidenceRecorder
from nexara_lib.deploy.sources import Frame, SourceSpec

LIVE = SourceSpec("door", 0, True, camera="door")


def recorder(tmp_path, **options) -> EvidenceRecorder:
    settings = dict(pre_s=2.0, post_s=1.0, max_mb=50.0, cell_px=480, max_fps=30.0)
    settings.update(options)
    return EvidenceRecorder(tmp_path / "detect", policy_for=lambda key: (0.6, 0.5, "site"), **settings)


def clip_frames(path) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def index_of(frame: np.ndarray) -> int:
    """The frame index a ``picture`` shows (from its left half's brightness), read back from a lossy clip."""
    return int(round((float(frame[:, :20].mean()) - 5) / 3))


def test_an_alert_keeps_a_clip_from_before_to_after_the_alarm(tmp_path):
    video = write_recording(tmp_path / "cam.avi", 80)
    rec = recorder(tmp_path, queue_mb=0.001)  # a recording queues nothing: it is read again for its alerts
    play(rec, video, alarms=[4.0])
    stats = rec.close()
    assert stats["alerts"] == 1 and stats["written"] == 1 and stats["frames_dropped"] == 0
    (folder,) = (tmp_path / "detect" / "evidence").iterdir()
    assert folder.name == "cam_avi.full.t0000004.00"  # a recording's alert: the same id on every rerun
    info = json.loads((folder / "alert.json").read_text())
    assert info["camera"] == "cam.avi" and info["on_threshold"] == 0.6 and info["threshold_from"] == "site"
    assert info["clip_start_t"] == pytest.approx(2.0) and info["clip_end_t"] == pytest.approx(5.0)
    assert info["frames"] == 31 and info["fps"] == pytest.approx(FPS) and len(info["frame_times"]) == 31
    assert info["window_scores"] and all(w["end_t"] >= 2.0 and w["start_t"] <= 5.0 for w in info["window_scores"])
    frames = clip_frames(folder / "clip.mp4")
    assert len(frames) == 31 and frames[0].shape == (48, 64, 3)
    assert abs(index_of(frames[0]) - 20) <= 2 and abs(index_of(frames[-1]) - 50) <= 2  # 2.0 s to 5.0 s
    snapshot = cv2.cvtColor(cv2.imread(str(folder / "snapshot.jpg")), cv2.COLOR_BGR2RGB)
    assert snapshot.shape == (48, 64, 3) and abs(index_of(snapshot) - 40) <= 2  # the alarm's frame
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_a_live_grid_cell_alert_shows_that_cell_only(tmp_path):
    rec = EvidenceRecorder(tmp_path, grid=(1, 2), pre_s=1.0, post_s=0.5, max_mb=50.0, cell_px=480, max_fps=30.0)
    monitor = SourceSpec("monitor", 1, True, camera="monitor")
    for i in range(40):
        rec.frame(monitor, Frame(i, i / FPS, picture(i, width=128), 0))
        if i == 20:
            rec.event(alert_event("monitor", 2.0, cell="r1c2"))
        if i % 4 == 0:  # let the writer keep up, as a camera's pace would
            threading.Event().wait(0.01)
    stats = rec.close()
    info = json.loads(next((tmp_path / "evidence").glob("*/alert.json")).read_text())
    assert info["camera"] == "monitor/r1c2" and info["size"] == [64, 48] and info["live"]
    assert info["alert_id"].startswith("monitor.r1c2.2")  # a live source's alert: named by the wall clock
    assert info["frames"] + stats["frames_dropped"] >= 15
    frame = clip_frames(tmp_path / "evidence" / info["alert_id"] / "clip.mp4")[0]
    assert abs(int(frame.mean()) - 30) <= 4  # the right half of the picture: camera r1c2, dark


def test_the_disk_cap_deletes_the_oldest_alerts_first(tmp_path):
    video = write_recording(tmp_path / "cam.avi", 200)
    rec = recorder(tmp_path, max_mb=0.001)  # about 1 kB: less than one alert
    play(rec, video, alarms=[4.0, 9.0, 14.0])
    stats = rec.close()
    assert stats["written"] == 3 and stats["deleted_for_cap"] == 2
    assert [p.name for p in (tmp_path / "detect" / "evidence").iterdir()] == ["cam_avi.full.t0000014.00"]


def _blocking_writer(monkeypatch):
    """Make every clip write wait for the returned event (at most 20 s)."""
    release = threading.Event()
    writing = threading.Event()
    real = evidence_module.write_clip

    def slow_write(*args, **kwargs):
        writing.set()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(evidence_module, "write_clip", slow_write)
    return writing, release


def feed_live(rec, start: int, stop: int, alarm: float | None = None, pace: bool = False) -> None:
    for i in range(start, stop):
        rec.frame(LIVE, Frame(i, i / FPS, picture(i), 0))
        if alarm is not None and abs(i / FPS - alarm) < 1e-9:
            rec.event(alert_event(LIVE.name, alarm))
        while pace and rec._queue:  # a camera's pace: the writer keeps up
            threading.Event().wait(0.002)


def test_a_stuck_writer_never_holds_a_live_detector_up(tmp_path, monkeypatch):
    writing, release = _blocking_writer(monkeypatch)
    rec = recorder(tmp_path, queue_mb=0.05)  # about 5 frames of 64x48
    feed_live(rec, 0, 21, alarm=1.0, pace=True)  # the clip is due at 2.0 s (frame 20): the writer is stuck on it
    assert writing.wait(10)
    detector = threading.Thread(target=feed_live, args=(rec, 21, 400))
    detector.start()
    detector.join(10)
    assert not detector.is_alive(), "a frame hook waited for the stuck writer"
    assert rec.stats["frames_dropped"] > 350  # evidence lost and counted, never a frame of detection
    release.set()
    stats = rec.close()
    assert stats["written"] == 1 and list((tmp_path / "detect" / "evidence").glob("door.full.*/clip.mp4"))


def test_a_failed_write_costs_only_that_alert(tmp_path, monkeypatch):
    real, calls = evidence_module.write_clip, []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(evidence_module, "write_clip", failing_once)
    rec = recorder(tmp_path)
    play(rec, write_recording(tmp_path / "cam.avi", 120), alarms=[4.0, 9.0])
    stats = rec.close()
    assert stats["failed"] == 1 and stats["written"] == 1 and "No space left" in stats["problems"][0]
    assert [p.name for p in (tmp_path / "detect" / "evidence").iterdir()] == ["cam_avi.full.t0000009.00"]
