"""Recordings and alerts for the field-loop tests: a real video file whose frames say their own index, and the
detector's hooks played over it (frames, windows, alerts, the end of the source) without a model."""

from pathlib import Path

import numpy as np

from nexara_lib.deploy.alerts import WindowScore
from nexara_lib.deploy.clips import write_clip
from nexara_lib.deploy.sources import FrameSource, SourceSpec

FPS = 10.0


def picture(index: int, width: int = 64, height: int = 48, shade: int = 0) -> np.ndarray:
    """RGB: the left half's brightness tells the frame (5 + 3 * index, up to 250), the right half is dark."""
    image = np.full((height, width, 3), 30 + shade, np.uint8)
    image[:, : width // 2] = min(250, 5 + 3 * index)
    return image


def write_recording(path: Path, frames: int, width: int = 64, shade: int = 0) -> Path:
    """A Motion-JPEG recording at ``FPS`` whose frame i shows ``picture(i)``."""
    write_clip(path, [picture(i, width=width, shade=shade) for i in range(frames)], FPS)
    return path


def alert_event(source: str, alarm_t: float, cell: str = "full") -> dict:
    """An "alert" event as ``Confirmation`` emits it: confirmed by windows from 2 s before the alarm."""
    return {
        "type": "alert",
        "t": alarm_t,
        "source": source,
        "cell": cell,
        "start_t": alarm_t - 2.0,
        "alarm_t": alarm_t,
        "end_t": None,
        "peak": 0.9,
        "first_frame": 0,
        "last_frame": 1,
        "windows": 3,
    }


def play(recorder, path: Path, alarms=(), camera: str = "", cell: str = "full") -> SourceSpec:
    """The detector's hooks over a recording: every frame, a 1 s window every 0.5 s, alerts, then the end."""
    spec = SourceSpec(camera or path.name, str(path), False, camera=camera)
    with FrameSource(spec) as reader:
        for frame in reader.frames():
            recorder.frame(spec, frame)
            if frame.index % 5 == 0 and frame.index >= 10:
                end = frame.t
                recorder.window(
                    WindowScore(spec.name, cell, end - 1.0, end, 0.8, "scored", frame.index - 10, frame.index)
                )
            for alarm in alarms:
                if abs(alarm - frame.t) < 1e-6:
                    recorder.event(alert_event(spec.name, alarm, cell))
    recorder.event({"type": "status", "source": spec.name, "status": "ok", "message": ""})
    return spec
