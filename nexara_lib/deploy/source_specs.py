"""What the detector watches: files, folders, camera indices and stream URLs as ``SourceSpec``s, with a URL's
credentials masked in every name, message and repr (``mask_credentials``)."""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")
_HOW = "pass a video file, a folder of videos, a camera index (0) or a stream URL (rtsp://...)"


class SourceError(ValueError):
    """A source cannot be found, opened or timed."""


def mask_credentials(text) -> str:
    """``text`` with every URL's ``user:password@`` replaced by ``***@``.

    Args:
        text: anything that may hold URLs (an exception too).
    Returns:
        The text, safe to print or log.
    """
    return _USERINFO.sub(r"\1***@", str(text))


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One source: display name (credentials masked), what ``cv2.VideoCapture`` opens, live or file."""

    name: str
    uri: str | int = dataclasses.field(repr=False)
    live: bool


def expand_sources(specs: list[str]) -> list[SourceSpec]:
    """Command-line sources as ``SourceSpec``s, one per video file, camera or stream.

    Args:
        specs: video files, folders (each video file in it, sorted), camera indices ("0"), stream URLs.
    Returns:
        The sources in the order given (files of the same name are named by their paths).
    Raises:
        SourceError: nothing given, a missing path, a folder without videos, an unknown URL scheme.
    """
    if not specs:
        raise SourceError(f"no video source given; {_HOW}")
    out: list[SourceSpec] = []
    for spec in specs:
        text = str(spec).strip()
        if text.isdigit():
            out.append(SourceSpec(f"camera {int(text)}", int(text), True))
        elif text.lower().startswith(LIVE_SCHEMES):
            out.append(SourceSpec(mask_credentials(text), text, True))
        elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
            raise SourceError(f"video source {mask_credentials(text)!r}: unsupported URL scheme; use {LIVE_SCHEMES}")
        else:
            out.extend(_path_sources(text))
    seen = collections.Counter(s.name for s in out if not s.live)
    return [dataclasses.replace(s, name=str(s.uri)) if not s.live and seen[s.name] > 1 else s for s in out]


def _path_sources(text: str) -> list[SourceSpec]:
    path = Path(text).expanduser()
    if not text or not path.exists():
        raise SourceError(f"video source {text!r} does not exist (no such file or folder); {_HOW}")
    if not path.is_dir():
        return [SourceSpec(path.name, str(path), False)]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise SourceError(f"folder {text!r} holds no video file ({' '.join(VIDEO_EXTENSIONS)}); {_HOW}")
    return [SourceSpec(p.name, str(p), False) for p in files]
