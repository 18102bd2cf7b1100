"""What else watches a detection run: hooks the ``Detector`` calls with every frame, window and event.

An observer sees what the detector sees, in the detector's thread, so its hooks must return at once
(``deploy.evidence`` hands everything to a writer thread). ``frame`` returning False stops that source
(``FootageLimit``: calibration has seen enough of a camera). The base class does nothing.
"""

from __future__ import annotations

import collections


class DetectorObserver:
    """No-op hooks; subclasses override what they need."""

    def frame(self, spec, frame) -> bool:
        """A decoded frame of ``spec`` (a ``SourceSpec``); return False to stop reading this source."""
        return True

    def window(self, window) -> None:
        """A window's verdict (``WindowScore``), as it is recorded."""

    def event(self, event: dict) -> None:
        """An event as it goes to ``events.jsonl`` (alert, reopen, clear, gap, status)."""

    def stop_reason(self, spec) -> str:
        """Why ``frame`` stopped this source (shown as the source's status message)."""
        return ""


class FootageLimit(DetectorObserver):
    """Stops each camera after ``max_s`` seconds of its footage (summed over its sources, by frame time)."""

    def __init__(self, max_s: float):
        self.max_s = float(max_s)
        self.seen_s: collections.Counter = collections.Counter()  # camera -> seconds of earlier sources
        self._span: dict[str, tuple[str, float, float]] = {}  # source -> (camera, first t, last t)

    def frame(self, spec, frame) -> bool:
        camera = spec.camera_name
        _, first, _ = self._span.get(spec.name, (camera, frame.t, frame.t))
        self._span[spec.name] = (camera, first, frame.t)
        return self.seconds(camera) < self.max_s

    def seconds(self, camera: str) -> float:
        """Footage of ``camera`` seen so far (s)."""
        return sum(last - first for cam, first, last in self._span.values() if cam == camera)

    def stop_reason(self, spec) -> str:
        return f"{spec.name}: stopped after {self.max_s / 60:.1f} minutes of camera {spec.camera_name!r} (--minutes)"
