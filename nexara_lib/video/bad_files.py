"""What a file that is not a usable clip is, told from its bytes and container boxes without decoding.

``probe_video`` uses these to turn "does not decode" into a reason a person can act on:
a missing file or broken link, an image or HTML page with a video suffix, an MP4 whose
recording or download never finished.
"""

from __future__ import annotations

import os
import struct

_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
)


def _sniff_content(head: bytes) -> str:
    """What a file that does not decode as video looks like, from its first bytes ("" = unknown)."""
    for signature, kind in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if not head or b"\x00" in head:
        return ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the sample
            return ""
        text = head[: err.start].decode("utf-8")
    if "<html" in text[:300].lower() or text.lstrip().lower().startswith("<!doctype html"):
        return "an HTML page (a failed download?)"
    return "a text file"


def mp4_problem(path: str, size: int) -> str:
    """Why an MP4/MOV file is incomplete, from its top-level boxes ("" if they look whole or it is no MP4)."""
    try:
        return _mp4_box_problem(path, size)
    except OSError:
        return ""


def _mp4_box_problem(path: str, size: int, max_boxes: int = 10_000) -> str:
    with open(path, "rb") as handle:
        if handle.read(8)[4:8] != b"ftyp":
            return ""
        offset, kinds = 0, set()
        for _ in range(max_boxes):
            if offset >= size:
                break
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                return f"truncated MP4: the file ends inside a box header at byte {offset}"
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset  # "to the end of the file"
            name = kind.decode("latin-1")
            if box_size < 8:
                return f"corrupt MP4: box {name!r} at byte {offset} has an impossible size {box_size}"
            if offset + box_size > size:
                return (
                    f"truncated MP4: its {name!r} box needs {offset + box_size} bytes but the file has {size} "
                    "(an unfinished download or recording)"
                )
            kinds.add(kind)
            offset += box_size
    if not kinds & {b"moov", b"moof"}:
        return (
            "incomplete MP4: no 'moov' box (the index of where frames are), so the recording or download did not finish"
        )
    return ""


def file_problem(path: str) -> str:
    """Why ``path`` cannot be a clip, found without decoding ("" if it may be one)."""
    if not os.path.exists(path):
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symbolic link (points to {target!r}, which does not exist or loops back)"
        return "file does not exist"
    if not os.path.isfile(path):
        return "not a regular file"
    if os.path.getsize(path) == 0:
        return "file is empty (0 bytes)"
    return ""


def explain_decode_failure(path: str, head: bytes, size: int, reason: str) -> str:
    """A decoding failure, made specific when the bytes show what the file really is."""
    kind = _sniff_content(head)
    if kind:
        suffix = os.path.splitext(path)[1] or "(no suffix)"
        return f"not a video: the file is {kind} with a {suffix} suffix; remove it or replace it with the real clip"
    structure = mp4_problem(path, size)
    return f"{reason}: {structure}" if structure else reason
