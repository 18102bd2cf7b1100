"""Feedback into training: reviewed alerts and calibration footage become labelled clips of their camera.

``import_feedback`` writes a dataset folder the audit reads as the generic ``<class>/*`` layout:

- ``fight/`` and ``noFight/``: ``<camera>__<alert id>-<k>.mp4`` cut from each reviewed alert's evidence clip
  over the windows that confirmed it (from the first confirming window's start to the alarm), in pieces of
  one window length (what the model scores), labelled by the verdict ("unsure" is skipped and counted);
  ``noFight/<camera>__normal-<recording>-<start>.mp4``: up to ``feedback_normal_clips`` clips of one window
  length per camera, spread evenly over the footage its calibration used (``site.json``; files only, live
  footage is not kept);
- ``groups.csv`` (clip, label, source_group = the camera, split = train): list it in ``groups_csv`` beside the
  field folder in ``data_dir``: every clip of a camera stays in one group, pinned to the training split (the
  clips were reviewed to be learnt from; the test split stays the dataset's own);
- ``imports.csv`` (clip, label, camera, origin, sha1): what was imported from where.

A clip whose origin (alert piece, footage span) is already imported is skipped, and one whose pixels equal a
clip already there (``frames_digest``) too; both are counted, so importing the same reviews twice adds
nothing. An alert whose verdict changed since its import is moved to its new class (or withdrawn, now unsure).
Clips are written before the CSVs, each atomically; the CSVs are written last, rows sorted: the same reviews
and footage give the same folder.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from nexara_lib.deploy.clips import cut_clip, frames_digest, read_clip, video_fps, write_clip
from nexara_lib.deploy.evidence import CLIP_FILE
from nexara_lib.deploy.grid import grid_layout
from nexara_lib.deploy.reviews import evidence_folder, load_alert, read_reviews
from nexara_lib.deploy.site import Site
from nexara_lib.io import atomic_path
from nexara_lib.labels import CLASS_NAMES

CLASS_DIRS = {1: "fight", 0: "noFight"}
LABEL_OF_VERDICT = {"fight": 1, "not_fight": 0}
IMPORTS_FILE = "imports.csv"
GROUPS_FILE = "groups.csv"
IMPORT_COLUMNS = ("clip", "label", "camera", "origin", "sha1")
MIN_FRAMES = 2  # a clip the audit accepts


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe form of a camera or recording name."""
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)).strip("._")
    return (out or "camera")[:limit]


@dataclasses.dataclass
class FeedbackReport:
    """What ``import_feedback`` did, in counts (``counts``) and the problems worth reading (``notes``)."""

    field_dir: Path
    counts: collections.Counter
    notes: list
    clips: pd.DataFrame  # imports.csv after the import

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['imported']} clip(s) added ({c['imported_fight']} fight, {c['imported_not_fight']} not a fight, "
            f"{c['imported_normal']} normal footage); skipped: {c['already_imported']} already imported, "
            f"{c['duplicates']} duplicate(s), {c['unsure']} unsure verdict(s), {c['missing_evidence']} alert(s) "
            f"without evidence; {c['relabelled']} relabelled, {c['withdrawn']} withdrawn; "
            f"{len(self.clips)} clip(s) in {self.field_dir.name}"
        )


def _read_imports(field_dir: Path) -> pd.DataFrame:
    path = field_dir / IMPORTS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(IMPORT_COLUMNS))
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(IMPORT_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}: it was not written by `nexara feedback`")
    return table[list(IMPORT_COLUMNS)]


def _alert_pieces(alert: Mapping) -> list[tuple[float, float]]:
    """The spans (s, recording time) cut from an alert: its confirming windows, in pieces of one window."""
    lengths = [w["end_t"] - w["start_t"] for w in alert.get("window_scores", []) if w["end_t"] > w["start_t"]]
    length = float(np.median(lengths)) if lengths else float(alert["alarm_t"] - alert["start_t"])
    start = max(float(alert["start_t"]), float(alert["clip_start_t"]))
    span = float(alert["alarm_t"]) - start
    pieces = max(1, math.floor(span / length + 1e-6)) if length > 0 else 1
    length = length if length > 0 else span
    return [(start + k * length, start + (k + 1) * length) for k in range(pieces)]


class _Importer:
    def __init__(self, field_dir: Path):
        self.field_dir = field_dir
        self.rows = {row["origin"]: row for row in _read_imports(field_dir).to_dict("records")}  # origin -> row
        self.digests = {row["sha1"] for row in self.rows.values()}
        self.counts: collections.Counter = collections.Counter()
        self.notes: list[str] = []

    def add(self, origin: str, camera: str, label: int, name: str, frames: list, fps: float, kind: str) -> None:
        if origin in self.rows:
            self.relabel(origin, label)
            return
        if len(frames) < MIN_FRAMES:
            self.counts["too_short"] += 1
            return
        digest = frames_digest(frames)
        if digest in self.digests:
            self.counts["duplicates"] += 1
            return
        rel = f"{CLASS_DIRS[label]}/{name}.mp4"
        write_clip(self.field_dir / rel, frames, fps)
        self.rows[origin] = {"clip": rel, "label": str(label), "camera": camera, "origin": origin, "sha1": digest}
        self.digests.add(digest)
        self.counts["imported"] += 1
        self.counts[f"imported_{kind}"] += 1

    def relabel(self, origin: str, label: int | None) -> None:
        """An imported clip under its latest verdict: unchanged, moved to the other class, or withdrawn (None)."""
        row = self.rows[origin]
        if label is not None and row["label"] == str(label):
            self.counts["already_imported"] += 1
            return
        old = self.field_dir / row["clip"]
        if label is None:  # now unsure: the clip has no label any more
            old.unlink(missing_ok=True)
            del self.rows[origin]
            self.digests.discard(row["sha1"])
            self.counts["withdrawn"] += 1
            return
        rel = f"{CLASS_DIRS[label]}/{Path(row['clip']).name}"
        (self.field_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        if old.is_file():
            os.replace(old, self.field_dir / rel)
        row.update(clip=rel, label=str(label))
        self.counts["relabelled"] += 1

    def origins(self, prefix: str) -> list[str]:
        return sorted(o for o in self.rows if o.startswith(prefix))

    def save(self) -> pd.DataFrame:
        table = pd.DataFrame(list(self.rows.values()), columns=list(IMPORT_COLUMNS)).sort_values("clip")
        table = table.reset_index(drop=True)
        with atomic_path(self.field_dir / IMPORTS_FILE) as tmp:
            table.to_csv(tmp, index=False)
        groups = pd.DataFrame(
            {
                "clip": table["clip"],
                "label": [CLASS_NAMES[int(v)] for v in table["label"]],
                "source_group": table["camera"],
                "split": "train",  # reviewed field clips are fed back into training, never held out for testing
            }
        )
        with atomic_path(self.field_dir / GROUPS_FILE) as tmp:
            groups.to_csv(tmp, index=False)
        return table


def _import_alerts(importer: _Importer, reviews_path: Path) -> None:
    reviews = read_reviews(reviews_path)
    importer.notes.extend(reviews.problems())
    for alert_key, line in sorted(reviews.latest.items()):
        if line["verdict"] not in LABEL_OF_VERDICT:
            importer.counts["unsure"] += 1
            for origin in importer.origins(f"alert:{alert_key}:"):
                importer.relabel(origin, None)
            continue
        label = LABEL_OF_VERDICT[line["verdict"]]
        alert = load_alert(evidence_folder(line, reviews_path))
        clip = Path(alert["folder"]) / alert.get("clip", CLIP_FILE) if alert else None
        if alert is None or clip is None or not clip.is_file():
            known = importer.origins(f"alert:{alert_key}:")
            for origin in known:  # imported before its evidence was deleted: the verdict still applies
                importer.relabel(origin, label)
            if not known:
                importer.counts["missing_evidence"] += 1
                importer.notes.append(f"alert {alert_key}: its evidence is gone (deleted by the disk cap, or moved)")
            continue
        frames, fps = read_clip(clip)
        times = alert.get("frame_times") or [alert["clip_start_t"] + i / fps for i in range(len(frames))]
        times = np.asarray(times[: len(frames)], dtype=np.float64)
        camera = str(alert.get("camera") or alert["source"])
        for k, (start, end) in enumerate(_alert_pieces(alert)):
            chosen = [frames[i] for i in np.flatnonzero((times >= start - 1e-6) & (times < end - 1e-6))]
            name = f"{slug(camera)}__{slug(alert['alert_id'], 120)}-{k}"
            origin = f"alert:{alert_key}:{k}"
            importer.add(origin, camera, label, name, chosen, float(alert.get("fps") or fps), line["verdict"])


def _footage_starts(footage: list[Mapping], length: float, count: int) -> list[tuple[Mapping, float]]:
    """Up to ``count`` starts of clips of ``length`` s, evenly spread over a camera's file footage."""
    slots = []
    for item in footage:
        if item.get("live") or not item.get("path"):
            continue
        start, end = float(item["start_s"]), float(item["end_s"])
        slots += [(item, start + k * length) for k in range(max(0, math.floor((end - start) / length + 1e-6)))]
    if not slots or count <= 0:
        return []
    picks = sorted(set(np.round(np.linspace(0, len(slots) - 1, min(count, len(slots)))).astype(int).tolist()))
    return [slots[i] for i in picks]


def _import_footage(importer: _Importer, site: Site, clips_per_camera: int) -> None:
    length = float(site.export["window_s"])
    for camera in sorted(site.cameras):
        entry = site.cameras[camera]
        footage = entry.get("footage", [])
        if any(f.get("live") for f in footage):
            importer.counts["live_footage_not_kept"] += 1
            importer.notes.append(f"camera {camera!r} was calibrated on a live stream: its footage was not kept")
        for item, start in _footage_starts(footage, length, clips_per_camera):
            path = Path(item["path"])
            if not path.is_file():
                importer.counts["footage_missing"] += 1
                importer.notes.append(f"camera {camera!r}: calibration footage {path.name} is gone")
                continue
            grid = entry.get("grid", {"rows": 1, "cols": 1, "margin": 0, "min_cell": 16})
            frames = cut_clip(path, start, start + length)
            if frames:
                height, width = frames[0].shape[:2]
                layout = grid_layout(height, width, grid["rows"], grid["cols"], grid["margin"], grid["min_cell"])
                cell = next(c for c in layout.cells if c.name == entry.get("cell", "full"))
                frames = [np.ascontiguousarray(f[cell.y0 : cell.y1, cell.x0 : cell.x1]) for f in frames]
            tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            origin = f"normal:{camera}:{tag}:{start:.3f}"
            name = f"{slug(camera)}__normal-{slug(path.stem, 40)}-{tag}-{start:08.2f}"
            importer.add(origin, camera, 0, name, frames, video_fps(path) or 25.0, "normal")


def import_feedback(
    reviews_path: str | Path | None, field_dir: str | Path, *, site: Site | None = None, normal_clips: int = 0
) -> FeedbackReport:
    """Turn reviewed alerts (and a site's calibration footage) into labelled clips in ``field_dir``.

    Args:
        reviews_path: the reviews file (``deploy.reviews``); None: footage only.
        field_dir: the dataset folder (created); layer it on with ``data_dir: [dataset, field_dir]`` and
            ``groups_csv: field_dir/groups.csv``.
        site: a site file whose calibration footage gives normal clips (None: none).
        normal_clips: normal clips per camera at most (``feedback_normal_clips``).
    Returns:
        ``FeedbackReport``.
    """
    field_dir = Path(field_dir)
    field_dir.mkdir(parents=True, exist_ok=True)
    importer = _Importer(field_dir)
    if reviews_path is not None:
        if not Path(reviews_path).is_file():
            raise ValueError(f"reviews file {reviews_path} does not exist; review alerts in notebook 09 first")
        _import_alerts(importer, Path(reviews_path))
    if site is not None:
        _import_footage(importer, site, normal_clips)
    table = importer.save()
    return FeedbackReport(field_dir, importer.counts, importer.notes, table)
