"""Alert evidence: for every alert, a short clip of its camera (grid cell) from ``evidence_pre_s`` before to
``evidence_post_s`` after the alarm, a snapshot at the alarm and its window scores, beside ``events.jsonl``.

``EvidenceRecorder`` is a ``DetectorObserver`` that never holds the detector up. One writer thread does the work;
the hooks (called in the detector's thread) only hand it what it needs:

- a live source (camera, stream): each frame, shrunk so a grid cell is at most ``evidence_cell_px`` on its longer
  side and at most ``evidence_max_fps`` a second, goes to a queue bounded in memory; a full queue drops the frame
  and counts it (evidence is lost, never a frame of detection). The writer keeps a ring of each source's recent
  frames as JPEG (``pre_s`` + a second: memory bounded) and writes an alert's clip once ``post_s`` have passed;
- a recording (a file): nothing per frame. When the detector is done with the file, the writer reads it once more
  (``FrameSource``, so every frame has the time the detector saw) for the spans of its alerts only.

Layout, per alert: ``evidence/<alert id>/`` with ``clip.mp4`` (MPEG-4 part 2: fast to write, small, read by
OpenCV for the feedback import), ``snapshot.jpg`` and ``alert.json`` (the episode, the camera, its thresholds, the
clip's span and frame times, the window scores); ``browser_preview`` adds ``preview.webm`` (VP8, which browsers
play) when the review first shows the alert: VP8 costs ten to twenty times more to encode, so it is made only for
alerts someone watches.
A folder is written under a hidden name and renamed when complete; a reader never sees half of one. Disk
use is capped at ``evidence_max_mb``: after each alert the oldest alerts' folders go first.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np

from nexara_lib.deploy.clips import write_clip
from nexara_lib.deploy.grid import GridError, grid_layout
from nexara_lib.deploy.observers import DetectorObserver
from nexara_lib.deploy.source_specs import camera_key
from nexara_lib.deploy.sources import FrameSource, SourceSpec
from nexara_lib.io import atomic_path, write_json_atomic

EVIDENCE_DIR = "evidence"
ALERT_FILE = "alert.json"
CLIP_FILE = "clip.mp4"
PREVIEW_FILE = "preview.webm"
SNAPSHOT_FILE = "snapshot.jpg"
FORMAT = 1
RING_SLACK_S = 1.0  # frames kept beyond pre_s: an alert is raised a frame or two after its window ends
WINDOWS_KEPT = 512  # recent windows per cell (the alert's timeline)
JPEG_QUALITY = 85
QUEUE_ITEMS = 10_000  # windows and events waiting for the writer (frames have their own bound)


def alert_id(event: dict, live: bool, wall_time: float) -> str:
    """A file-name-safe id: source, cell and the alarm's time in the recording (a file: the same id on a rerun),
    or the wall clock (a live source: its times restart at every run)."""
    source = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(event["source"])).strip("_") or "source"
    if live:
        stamp = datetime.datetime.fromtimestamp(wall_time, datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4]
    else:
        stamp = f"t{float(event['alarm_t']):010.2f}"
    return f"{source[:80]}.{event['cell']}.{stamp}"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _written_ns(folder: Path) -> int:
    """When an alert's folder was completed (its ``alert.json``; the folder's own time if it has none)."""
    info = folder / ALERT_FILE
    return (info if info.is_file() else folder).stat().st_mtime_ns


@dataclasses.dataclass
class _Source:
    camera: str
    live: bool
    spec: SourceSpec | None = None  # a recording's (read again for its alerts)
    ring: collections.deque = dataclasses.field(default_factory=collections.deque)  # (t, jpeg, orig (h, w))


class EvidenceRecorder(DetectorObserver):
    """Writes every alert's evidence under ``out_dir/evidence`` (see the module docstring).

    Args:
        out_dir: the detection's output folder (``events.jsonl`` lives there).
        grid, margin, min_cell: the detector's grid (to cut a cell out of the picture as the detector does).
        pre_s, post_s: seconds of video before and after the alarm.
        max_mb: disk cap of the evidence folder (oldest alerts deleted first).
        cell_px: a cell's longer side is shrunk to at most this many pixels (memory and disk).
        max_fps: frames a second kept at most.
        policy_for: camera key -> (on, off, "site" | "export"), recorded with the alert.
        queue_mb: live frames waiting for the writer take at most this much memory; more are dropped and counted.
        source_options: how the detector opened its sources (``fps``, ``opener``, ...): a recording is read again
            with them, so its frames have the times the detector saw.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        grid: tuple[int, int] = (1, 1),
        margin: int = 0,
        min_cell: int = 16,
        pre_s: float,
        post_s: float,
        max_mb: float,
        cell_px: int,
        max_fps: float,
        policy_for: Callable[[str], tuple] | None = None,
        queue_mb: float = 64.0,
        source_options: Mapping | None = None,
    ):
        if min(pre_s, post_s) < 0 or max_mb <= 0 or cell_px < 16 or max_fps <= 0 or queue_mb <= 0:
            raise ValueError(
                f"evidence needs pre_s, post_s >= 0, max_mb > 0, cell_px >= 16, max_fps > 0 and queue_mb > 0; "
                f"got {pre_s}, {post_s}, {max_mb}, {cell_px}, {max_fps}, {queue_mb}"
            )
        self.folder = Path(out_dir) / EVIDENCE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.grid: tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.margin, self.min_cell = int(margin), int(min_cell)
        self.pre_s, self.post_s, self.cap_bytes = float(pre_s), float(post_s), int(max_mb * 1024 * 1024)
        self.cell_px, self.max_fps, self.queue_bytes = int(cell_px), float(max_fps), int(queue_mb * 1024 * 1024)
        self.policy_for, self.source_options = policy_for, dict(source_options or {})
        self.stats = collections.Counter(alerts=0, written=0, failed=0, frames_dropped=0, deleted_for_cap=0)
        self.problems: list[str] = []
        self.written: list[str] = []
        self._queue: collections.deque = collections.deque()
        self._queued = 0  # bytes of the live frames waiting
        self._cond = threading.Condition()
        self._closed = False
        self._scales: dict[tuple[int, int], float] = {}
        self._kept: dict[str, float] = {}  # live source -> time of the last frame kept (detector side)
        self._drops: collections.Counter = collections.Counter()  # live source -> frames dropped (queue full)
        self._sources: dict[str, _Source] = {}  # source name -> what the writer knows of it
        self._windows: dict[tuple[str, str], collections.deque] = {}
        self._pending: list[dict] = []
        self._thread = threading.Thread(target=self._run, name="evidence writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ hooks (detector thread: never wait)
    def frame(self, spec, frame) -> bool:
        if spec.name not in self._sources:
            self._sources[spec.name] = _Source(spec.camera_name, bool(spec.live), None if spec.live else spec)
        if not spec.live:  # a recording is read again for its alerts: nothing to keep now
            return True
        if frame.t - self._kept.get(spec.name, -math.inf) < 1.0 / self.max_fps - 1e-6:
            return True
        self._kept[spec.name] = frame.t
        image = self._shrink(frame.image)
        with self._cond:
            if self._queued and self._queued + image.nbytes > self.queue_bytes:
                self.stats["frames_dropped"] += 1
                self._drops[spec.name] += 1
                return True
            self._queued += image.nbytes
        self._put(("frame", spec.name, float(frame.t), image, frame.image.shape[:2]))
        return True

    def window(self, window) -> None:
        self._put(("window", window))

    def event(self, event: dict) -> None:
        if event.get("type") in ("alert", "status"):
            self._put(("event", dict(event), time.time()))

    def _put(self, item: tuple) -> None:
        with self._cond:
            if self._closed or (item[0] != "frame" and len(self._queue) >= QUEUE_ITEMS):
                self.stats["items_dropped"] += 1
                return
            self._queue.append(item)
            self._cond.notify()

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        """The picture with each grid cell at most ``cell_px`` on its longer side (never enlarged)."""
        shape = image.shape[:2]
        scale = self._scales.get(shape)
        if scale is None:
            cell_h, cell_w = shape[0] / self.grid[0], shape[1] / self.grid[1]
            scale = self._scales[shape] = min(1.0, self.cell_px / max(cell_h, cell_w))
        if scale >= 1.0:
            return image
        size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def close(self) -> dict:
        """Finish every pending alert with the frames there are, stop the writer; returns the counts."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        return {**self.stats, "problems": list(self.problems[:20])}

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    break
                item = self._queue.popleft()
                if item[0] == "frame":
                    self._queued -= item[3].nbytes
            try:
                self._handle(item)
            except Exception as err:  # noqa: BLE001 - evidence must never stop detection; counted and kept
                self.stats["failed"] += 1
                self.problems.append(f"{type(err).__name__}: {err}")
        for name in sorted({a["source"] for a in self._pending}):
            self._source_ended(name)

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "frame":
            _, name, t, image, shape = item
            source = self._sources[name]
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if ok:
                source.ring.append((t, jpeg.tobytes(), shape))
            keep_from = min([t - self.pre_s - RING_SLACK_S] + [a["alarm_t"] - self.pre_s for a in self._mine(name)])
            while source.ring and source.ring[0][0] < keep_from:
                source.ring.popleft()
            for alert in [a for a in self._mine(name) if t >= a["alarm_t"] + self.post_s]:
                self._finish(alert, self._ring_frames(source, alert))
        elif kind == "window":
            window = item[1]
            self._windows.setdefault((window.source, window.cell), collections.deque(maxlen=WINDOWS_KEPT)).append(
                window
            )
        else:
            _, event, wall = item
            if event["type"] == "alert":
                self.stats["alerts"] += 1
                self._pending.append({**event, "_wall": wall})
            else:
                self._source_ended(event.get("source"))

    def _mine(self, source: str | None) -> list[dict]:
        return [a for a in self._pending if a["source"] == source]

    def _span(self, alert: dict) -> tuple[float, float]:
        return alert["alarm_t"] - self.pre_s - 1e-9, alert["alarm_t"] + self.post_s + 1e-9

    def _ring_frames(self, source: _Source, alert: dict) -> list[tuple]:
        """(t, RGB picture, original (h, w)) of a live source's kept frames in the alert's span."""
        start, end = self._span(alert)
        out = []
        for t, jpeg, shape in source.ring:
            if start <= t <= end:
                decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if decoded is not None:
                    out.append((t, cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), shape))
        return out

    def _source_ended(self, name: str | None) -> None:
        """A source ended: its alerts get their frames, from the ring (live) or from one more pass over the file."""
        alerts = self._mine(name)
        source = self._sources.get(str(name))
        if not alerts:
            return
        if source is None or source.spec is None:
            for alert in alerts:
                self._finish(alert, self._ring_frames(source, alert) if source else [])
            return
        frames: dict[int, list] = {id(a): [] for a in alerts}
        last_kept = {id(a): -math.inf for a in alerts}
        end_all = max(self._span(a)[1] for a in alerts)
        try:
            with FrameSource(source.spec, **self.source_options) as reader:
                for frame in reader.frames():
                    if frame is None:  # only a live source with poll_s set yields None; a recording never does
                        continue
                    if frame.t > end_all:
                        break
                    for alert in alerts:
                        start, end = self._span(alert)
                        key = id(alert)
                        if start <= frame.t <= end and frame.t - last_kept[key] >= 1.0 / self.max_fps - 1e-6:
                            last_kept[key] = frame.t
                            frames[key].append((frame.t, self._shrink(frame.image), frame.image.shape[:2]))
        except Exception as err:  # noqa: BLE001 - the file moved or broke since: these alerts lose their clip
            self.problems.append(f"{name}: reading it again for its alerts failed: {err}")
        for alert in alerts:
            self._finish(alert, frames[id(alert)])

    def _finish(self, alert: dict, kept: list[tuple]) -> None:
        self._pending.remove(alert)
        try:
            self._write(alert, kept)
        except Exception as err:  # noqa: BLE001 - a disk or codec failure costs this alert's evidence only
            self.stats["failed"] += 1
            self.problems.append(f"alert at {alert['alarm_t']:.1f} s of {alert['source']}: {err}")

    def _write(self, alert: dict, kept: list[tuple]) -> None:
        source = self._sources.get(alert["source"])
        if source is None or not kept:
            raise ValueError("no frame of the alert's span was kept")
        shape = kept[-1][2]
        kept = [f for f in kept if f[2] == shape]  # a resolution change: the part in the alarm's size
        layout = grid_layout(shape[0], shape[1], self.grid[0], self.grid[1], self.margin, self.min_cell)
        cell = next((c for c in layout.cells if c.name == alert["cell"]), None)
        if cell is None:
            raise GridError(f"cell {alert['cell']!r} is not in the {self.grid[0]}x{self.grid[1]} grid")
        frames, times = [], []
        for t, picture, _ in kept:
            sy, sx = picture.shape[0] / shape[0], picture.shape[1] / shape[1]
            y0, y1, x0, x1 = (round(cell.y0 * sy), round(cell.y1 * sy), round(cell.x0 * sx), round(cell.x1 * sx))
            frames.append(np.ascontiguousarray(picture[y0:y1, x0:x1]))
            times.append(t)
        steps = np.diff(times)
        fps = float(1.0 / np.median(steps)) if len(steps) and np.median(steps) > 0 else 10.0
        ident = alert_id(alert, source.live, alert["_wall"])
        key = camera_key(source.camera, alert["cell"])
        on, off, origin = self.policy_for(key) if self.policy_for else (None, None, "export")
        snapshot = frames[int(np.argmin(np.abs(np.asarray(times) - alert["alarm_t"])))]
        windows = [
            {"start_t": w.start_t, "end_t": w.end_t, "score": w.score, "state": w.state}
            for w in self._windows.get((alert["source"], alert["cell"]), ())
            if w.end_t > times[0] - 1e-9 and w.start_t < times[-1] + 1e-9
        ]
        info = {
            "format": FORMAT,
            "alert_id": ident,
            "source": alert["source"],
            "camera": key,
            "cell": alert["cell"],
            "live": source.live,
            **{k: alert[k] for k in ("start_t", "alarm_t", "peak", "windows", "first_frame", "last_frame")},
            "wall_time": datetime.datetime.fromtimestamp(alert["_wall"], datetime.UTC).isoformat(timespec="seconds"),
            "on_threshold": on,
            "off_threshold": off,
            "threshold_from": origin,
            "clip": CLIP_FILE,
            "snapshot": SNAPSHOT_FILE,
            "clip_start_t": times[0],
            "clip_end_t": times[-1],
            "fps": fps,
            "frames": len(frames),
            "frame_times": [round(t, 4) for t in times],
            "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
            "frames_dropped_by_source": self._drops[alert["source"]],
            "window_scores": windows,
        }
        final = self.folder / ident
        tmp = self.folder / f".{ident}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write_clip(tmp / CLIP_FILE, frames, fps)
            with atomic_path(tmp / SNAPSHOT_FILE, keep_suffix=True) as snap:
                cv2.imwrite(str(snap), cv2.cvtColor(snapshot, cv2.COLOR_RGB2BGR))
            write_json_atomic(tmp / ALERT_FILE, info)
            if final.exists():  # the same recording detected again: its alert is replaced
                old = self.folder / f".{ident}.{os.getpid()}.old"
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.stats["written"] += 1
        self.written.append(ident)
        self._enforce_cap(keep=ident)

    def _enforce_cap(self, keep: str) -> None:
        """Delete the oldest alerts' folders until the evidence folder is under the cap (never ``keep``)."""
        folders = [p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        sizes = {p: folder_bytes(p) for p in folders}
        total = sum(sizes.values())
        for folder in sorted(folders, key=lambda p: (_written_ns(p), p.name)):
            if total <= self.cap_bytes:
                break
            if folder.name == keep:
                continue
            doomed = self.folder / f".{folder.name}.{os.getpid()}.del"
            os.replace(folder, doomed)  # gone from readers at once, then removed
            shutil.rmtree(doomed, ignore_errors=True)
            total -= sizes[folder]
            self.stats["deleted_for_cap"] += 1
