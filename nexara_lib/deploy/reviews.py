"""Operators' verdicts on alerts: the reviews file, and finding the alerts that await one.

The reviews file is JSON lines, append-only: ``record_verdict`` writes one line per verdict at once
(write, flush, fsync), so a crash loses at most the line being written. A torn last line (a crash in the
middle of it) is ignored on reading and reported; the next verdict starts on a line of its own. One
verdict per alert counts: the latest line of an alert wins (an operator may change their mind). A line
holds the alert's id, the verdict, the camera, where its evidence is (relative to the reviews file when it
can be) and, optionally, who reviewed it and when: the same for any reviewer or tool.

Alerts are the ``alert.json`` of every evidence folder (``deploy.evidence``) under the folders given.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from nexara_lib.deploy.evidence import ALERT_FILE, EVIDENCE_DIR
from nexara_lib.io import read_json

VERDICTS = ("fight", "not_fight", "unsure")
VERDICT_WORDS = {"fight": "fight", "not_fight": "not a fight", "unsure": "unsure"}
FORMAT = 1


@dataclasses.dataclass
class Reviews:
    """What a reviews file holds: the latest verdict per alert id, and what could not be read."""

    path: Path
    latest: dict  # alert id -> its latest line
    lines: int  # verdict lines read
    torn: bool  # the last line was cut short (a crash while writing it): ignored
    bad_lines: list  # line numbers of other unreadable lines: ignored

    def verdict(self, alert: str) -> str | None:
        line = self.latest.get(alert)
        return line["verdict"] if line else None

    def problems(self) -> list[str]:
        """What was ignored, in words (empty when the file is clean)."""
        out = []
        if self.torn:
            out.append(f"the last line of {self.path.name} was cut short (a crash while writing it) and is ignored")
        if self.bad_lines:
            out.append(f"{len(self.bad_lines)} unreadable line(s) of {self.path.name} ignored: {self.bad_lines[:10]}")
        return out


def _valid(line: object) -> bool:
    return isinstance(line, dict) and isinstance(line.get("alert"), str) and line.get("verdict") in VERDICTS


def read_reviews(path: str | Path) -> Reviews:
    """Read a reviews file (an empty ``Reviews`` when it does not exist yet)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Reviews(path, {}, 0, False, [])
    chunks = data.split(b"\n")
    torn = bool(chunks[-1].strip())  # text after the last newline: a line whose writing never finished
    latest, bad, count = {}, [], 0
    for number, chunk in enumerate(chunks[:-1], start=1):
        if not chunk.strip():
            continue
        try:
            line = json.loads(chunk.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            line = None
        if not _valid(line):
            bad.append(number)
            continue
        latest[line["alert"]] = line
        count += 1
    return Reviews(path, latest, count, torn, bad)


def record_verdict(reviews_path: str | Path, alert: Mapping, verdict: str, reviewer: str = "") -> dict:
    """Append one verdict on ``alert`` (an ``alert.json`` as ``find_alerts`` gives it) to the reviews file.

    Args:
        reviews_path: the reviews file (created with its folder).
        alert: needs ``alert_id``, ``camera`` and ``folder`` (its evidence folder).
        verdict: one of ``VERDICTS`` ("fight", "not_fight", "unsure").
        reviewer: optional name or initials.
    Returns:
        The line written.
    Raises:
        ValueError: an unknown verdict or an alert without an id.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {list(VERDICTS)}")
    if not alert.get("alert_id"):
        raise ValueError("the alert has no alert_id: give an alert.json of an evidence folder")
    path = Path(reviews_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(alert["folder"]).resolve()
    try:
        where = os.path.relpath(folder, path.parent.resolve())
    except ValueError:  # another drive (Windows)
        where = str(folder)
    line = {
        "format": FORMAT,
        "alert": str(alert["alert_id"]),
        "verdict": verdict,
        "camera": str(alert.get("camera", "")),
        "evidence": Path(where).as_posix(),
        "reviewer": str(reviewer),
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(line, ensure_ascii=True, sort_keys=True) + "\n"
    with open(path, "ab") as handle:
        if handle.tell() > 0 and not _ends_with_newline(path):
            text = "\n" + text  # a torn last line stays a line of its own, ignored
        handle.write(text.encode("ascii"))
        handle.flush()
        os.fsync(handle.fileno())
    return line


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def evidence_folder(line: Mapping, reviews_path: str | Path) -> Path:
    """The evidence folder a verdict line points at (relative paths are relative to the reviews file)."""
    where = Path(str(line["evidence"]))
    return where if where.is_absolute() else Path(reviews_path).resolve().parent / where


def load_alert(folder: str | Path) -> dict | None:
    """An evidence folder's ``alert.json`` with ``folder`` added; None when it is not a complete alert."""
    folder = Path(folder)
    try:
        info = read_json(folder / ALERT_FILE)
    except ValueError:
        return None
    if not isinstance(info, dict) or "alert_id" not in info:
        return None
    return {**info, "folder": str(folder)}


def find_alerts(folders: Iterable[str | Path]) -> list[dict]:
    """Every alert with evidence under ``folders`` (each a detection's output folder, or a folder holding
    several: searched for ``evidence/<alert>/alert.json``), oldest alarm first, each once."""
    seen: dict[str, dict] = {}
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            continue
        for info_file in sorted(root.glob(f"**/{EVIDENCE_DIR}/*/{ALERT_FILE}")):
            alert = load_alert(info_file.parent)
            if alert is not None:
                seen.setdefault(str(Path(alert["folder"]).resolve()), alert)
    return sorted(seen.values(), key=lambda a: (a.get("wall_time", ""), a.get("alarm_t", 0.0), a["alert_id"]))
