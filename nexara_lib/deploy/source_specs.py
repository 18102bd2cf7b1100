"""What the detector watches: files, folders, camera indices and stream URLs as ``SourceSpec``s, with a URL's
credentials masked in every name, message and repr (``mask_credentials``).

A source may be named on the command line as ``NAME=SPEC`` (``lobby=rtsp://...``, ``lobby=recordings/lobby/``):
NAME is then its camera, the key of its calibration (``deploy.site``) and of its field clips, whatever the
recording's file name; every file of a named folder is that one camera. Unnamed, a source is its own camera.
A grid cell's camera is ``camera/cell`` (``camera_key``)."""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")
_HOW = (
    "pass a video file, a folder of videos, a camera index (0) or a stream URL (rtsp://...), each optionally "
    "named NAME=SOURCE"
)
# NAME of NAME=SPEC: a letter or digit first, then letters, digits, space, dot, dash or underscore (no '/', ':').
_CAMERA_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9 _.-]{0,63})=(.+)$")
WHOLE_PICTURE = "full"  # the one cell of a 1x1 grid (``deploy.grid``)


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


def camera_key(camera: str, cell: str) -> str:
    """The camera a grid cell shows: ``camera`` for the whole picture, ``camera/cell`` for a cell of a grid."""
    return camera if cell == WHOLE_PICTURE else f"{camera}/{cell}"


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One source: display name (credentials masked), what ``cv2.VideoCapture`` opens, live or file, and the
    camera it shows (``NAME`` of ``NAME=SPEC``; "" = the source is its own camera, see ``camera_name``)."""

    name: str
    uri: str | int = dataclasses.field(repr=False)
    live: bool
    camera: str = ""

    @property
    def camera_name(self) -> str:
        """The camera this source shows: its given NAME, else its own name."""
        return self.camera or self.name


def split_camera_name(text: str) -> tuple[str, str]:
    """(NAME, SPEC) of ``NAME=SPEC``; ("", text) when ``text`` names no camera (an existing path with '=' in
    it, a URL whose query holds '=', a plain source)."""
    text = str(text).strip()
    match = _CAMERA_NAME.match(text)
    if not match or Path(text).expanduser().exists():
        return "", text
    name, spec = match.group(1).strip(), match.group(2).strip()
    return (name, spec) if name else ("", text)


def expand_sources(specs: list[str]) -> list[SourceSpec]:
    """Command-line sources as ``SourceSpec``s, one per video file, camera or stream.

    Args:
        specs: video files, folders (each video file in it, sorted), camera indices ("0"), stream URLs; each
            may be ``NAME=SPEC``, the camera it shows (a camera's only source is called NAME, each of several
            recordings of it, a named folder's files, ``NAME/<file>``).
    Returns:
        The sources in the order given (unnamed files of the same name are named by their paths).
    Raises:
        SourceError: nothing given, a missing path, a folder without videos, an unknown URL scheme.
    """
    if not specs:
        raise SourceError(f"no video source given; {_HOW}")
    out: list[SourceSpec] = []
    for spec in specs:
        camera, text = split_camera_name(spec)
        if text.isdigit():
            found = [SourceSpec(f"camera {int(text)}", int(text), True)]
        elif text.lower().startswith(LIVE_SCHEMES):
            found = [SourceSpec(mask_credentials(text), text, True)]
        elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
            raise SourceError(f"video source {mask_credentials(text)!r}: unsupported URL scheme; use {LIVE_SCHEMES}")
        else:
            found = _path_sources(text)
        out.extend(dataclasses.replace(s, camera=camera) for s in found)
    per_camera = collections.Counter(s.camera for s in out if s.camera)
    out = [  # a camera of one source is called by its name; one of several recordings NAME/<file>
        dataclasses.replace(s, name=s.camera if per_camera[s.camera] == 1 else f"{s.camera}/{s.name}")
        if s.camera
        else s
        for s in out
    ]
    seen = collections.Counter(s.name for s in out if not s.live)
    return [
        dataclasses.replace(s, name=str(s.uri)) if not s.live and not s.camera and seen[s.name] > 1 else s for s in out
    ]


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
