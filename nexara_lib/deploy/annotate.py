"""The optional annotated video of a detection run: every source's pictures with each camera cell outlined,
its latest window score or state written in, and a red frame while its alarm is on."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

ALARM = (255, 40, 40)  # RGB
CALM = (60, 200, 90)
UNKNOWN = (170, 170, 170)


def safe_stem(name: str) -> str:
    """A file-name-safe stem of a source name (a file name, "camera 0", a masked URL)."""
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).stem)
    return keep.strip("._") or "source"


class Annotator:
    """Writes ``<out_dir>/<source>.annotated.mp4`` per source to a temporary name, renamed by ``close``
    (``abort`` removes it: a failed run leaves no half video under the final name).

    Args:
        out_dir: folder of the annotated videos.
        fps: frame rate written when a source does not say its own.
    """

    def __init__(self, out_dir: str | Path, fps: float = 25.0):
        self.out_dir, self.fps = Path(out_dir), float(fps)
        self.writers: dict[str, tuple[cv2.VideoWriter, tuple[int, int], Path]] = {}  # writer, size, its temp file
        self.paths: dict[str, Path] = {}

    def frame(self, source: str, image: np.ndarray, fps: float | None, layout, cells: list[dict]) -> None:
        """Draw one RGB picture of ``source``: ``cells`` holds, per layout cell, {"score", "state", "alarm"}."""
        height, width = image.shape[:2]
        if source not in self.writers:
            path = self.out_dir / f"{safe_stem(source)}.annotated.mp4"
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps or self.fps, (width, height))
            if not writer.isOpened():
                raise ValueError(f"cannot write the annotated video {path}: OpenCV has no mp4v encoder here")
            self.writers[source], self.paths[source] = (writer, (width, height), tmp), path
        writer, size, _ = self.writers[source]
        picture = np.ascontiguousarray(image)
        if (width, height) != size:  # the source changed resolution: keep the file's size
            picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
            scale = (size[0] / width, size[1] / height)
        else:
            scale = (1.0, 1.0)
        for cell, state in zip(layout.cells, cells, strict=True):
            x0, y0 = int(cell.x0 * scale[0]), int(cell.y0 * scale[1])
            x1, y1 = int(cell.x1 * scale[0]) - 1, int(cell.y1 * scale[1]) - 1
            colour = ALARM if state["alarm"] else (CALM if state["state"] == "scored" else UNKNOWN)
            cv2.rectangle(picture, (x0, y0), (x1, y1), colour, 4 if state["alarm"] else 1)
            label = f"{state['score']:.2f}" if state["score"] is not None else (state["state"] or "...")
            if state["alarm"]:
                label = "ALARM " + label
            cv2.putText(picture, label, (x0 + 4, y0 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    def close(self) -> dict[str, Path]:
        """Finish every video; returns source -> path."""
        for source, (writer, _, tmp) in self.writers.items():
            writer.release()
            os.replace(tmp, self.paths[source])
        self.writers.clear()
        return dict(self.paths)

    def abort(self) -> None:
        """Drop every unfinished video."""
        for writer, _, tmp in self.writers.values():
            writer.release()
            Path(tmp).unlink(missing_ok=True)
        self.writers.clear()
