"""Probing one video file with OpenCV: is it a usable clip, what does it hold, what does it look like.

Two jobs, both with bounded memory (a clip is never loaded whole):

* ``probe_video`` tells whether a file is a usable clip and what it holds
  (codec, header and verified frame count, fps, duration, resolution, size,
  whether the first and last frames decode, a perceptual hash, warnings). It
  never raises for a bad file: the audit lists bad files with a readable reason.
* ``phash_distance`` compares two perceptual hashes, so a re-encoded copy of a
  clip (another codec, quality or size) is recognised although its bytes differ.

Probing seeks only over long gaps and checks the result, so a long clip with a
plausible header is never decoded whole. Why a bad file is bad is told by ``video.bad_files``;
reading sampled frames is ``video.frames``.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from nexara_lib.video.bad_files import explain_decode_failure, file_problem, mp4_problem

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".mpeg", ".wmv", ".webm", ".m4v", ".flv")

# A clip needs at least two frames: one frame has no motion and no "next" frame.
MIN_FRAMES = 2
# Frame counts above this in a header are treated as garbage (about 46 h at 60 fps).
MAX_PLAUSIBLE_FRAMES = 10_000_000
# Frames grabbed at the end of a clip to check the header's frame count.
VERIFY_TAIL_FRAMES = 4
# Frames hashed for near-duplicate search, at these relative positions. Interior
# ones: first and last frames are often black or fades that unrelated clips share.
PHASH_POSITIONS = (0.2, 0.4, 0.6, 0.8)
# A frame whose 9x8 grey thumbnail varies less than this (std, grey levels) is flat
# (black, a fade, a test card): its hash would match any other flat frame, so none is kept.
FLAT_THUMB_STD = 2.0
# Reach a frame by grabbing forward when it is at most this many frames ahead. A
# seek decodes from the preceding keyframe anyway (in short clips often the first
# frame), so short hops are cheaper by grabbing and long ones by seeking.
SEEK_MIN_GAP = 64
# Relative disagreement between frame timestamps and frames / header fps above
# which the frame rate is reported as variable or wrong.
TIMING_TOLERANCE = 0.10


def empty_probe() -> dict:
    """The probe record of a file nothing is known about yet (every key ``probe_video`` returns)."""
    return {
        "opened": False,
        "codec": "",
        "frames_header": 0,
        "frames": 0,
        "fps": float("nan"),
        "duration_s": float("nan"),
        "width": 0,
        "height": 0,
        "bytes": 0,
        "first_frame_ok": False,
        "last_frame_ok": False,
        "phash": "",
        "warnings": "",
        "status": "unusable",
        "reason": "",
    }


def _fourcc_text(value: float) -> str:
    code = int(value) if value and math.isfinite(value) else 0
    if code <= 0:
        return ""
    text = code.to_bytes(4, "little").decode("latin-1")
    # Some backends report a numeric codec id instead of four printable letters.
    return text.strip("\x00 ") if text.isprintable() else str(code)


# --------------------------------------------------------------------------- frames seen while probing


def _dhash(frame: np.ndarray) -> int | None:
    """64-bit difference hash of a frame: brighter-than-right-neighbour bits of a 9x8 grey thumbnail.

    Returns None for a flat frame, whose hash would match every other flat frame.
    """
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(frame, (9, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    if float(thumb.std()) < FLAT_THUMB_STD:
        return None
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _is_grey(frame: np.ndarray) -> bool:
    """True when the colour channels agree (a grey or infrared clip stored as colour)."""
    if frame.ndim == 2:
        return True
    thumb = cv2.resize(frame[..., :3], (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)
    return int(np.abs(np.diff(thumb, axis=2)).max()) <= 2


def _facts(frame, cap: cv2.VideoCapture) -> dict:
    """What probing keeps of a decoded frame: never the pixels (4K frames are 25 MB each)."""
    if frame is None:
        return {"ok": False, "hash": None, "ms": float("nan")}
    return {"ok": True, "hash": _dhash(frame), "ms": float(cap.get(cv2.CAP_PROP_POS_MSEC))}


def _walk(cap: cv2.VideoCapture, position: int, targets: list[int], keep: set[int]) -> tuple[dict, bool]:
    """Grab the ``targets`` (ascending, each >= ``position``) in order, keeping facts of those in ``keep``.

    Args:
        cap: an open capture whose next grab yields frame ``position``.
    Returns:
        (facts by frame index, True when every target grabbed).
    """
    seen: dict[int, dict] = {}
    for target in targets:
        if target - position > SEEK_MIN_GAP and cap.set(cv2.CAP_PROP_POS_FRAMES, target):
            position = target
        while position < target:
            if not cap.grab():
                return seen, False
            position += 1
        if not cap.grab():
            return seen, False
        position += 1
        if target in keep:
            ok, frame = cap.retrieve()
            seen[target] = _facts(frame if ok else None, cap)
    return seen, True


def _hash_indices(n_frames: int) -> list[int]:
    return [int(round(p * (n_frames - 1))) for p in PHASH_POSITIONS]


def _count_frames(path: str) -> int:
    """Frames that decode, by grabbing them all (decodes, keeps nothing)."""
    cap = cv2.VideoCapture(path)
    try:
        count = 0
        while cap.isOpened() and cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def _frames_after_header_check(cap: cv2.VideoCapture, header: int, first: dict) -> dict | None:
    """Facts of the hash and last frames when the header's frame count is right, else None.

    The header is trusted only if its last frames grab in place and nothing
    follows; a truncated file, an inexact seek or a wrong header all break this.
    """
    keep = set(_hash_indices(header)) | {header - 1}
    tail = set(range(header - VERIFY_TAIL_FRAMES, header))
    seen, complete = _walk(cap, 1, sorted((keep | tail) - {0}), keep)
    if not complete or cap.grab():
        return None
    return {0: first, **seen}


def _frames_by_counting(path: str, first: dict) -> tuple[int, dict]:
    """(frames that decode, facts of the hash and last frames), from a count and a second pass."""
    n_frames = _count_frames(path)
    seen = {0: first}
    if n_frames > 1:
        keep = set(_hash_indices(n_frames)) | {n_frames - 1}
        cap = cv2.VideoCapture(path)
        try:
            if cap.grab():  # frame 0 is known already
                more, _ = _walk(cap, 1, sorted(keep - {0}), keep)
                seen.update(more)
        finally:
            cap.release()
    return max(n_frames, 1), seen


# --------------------------------------------------------------------------- probe


def _read_header(cap: cv2.VideoCapture, info: dict) -> None:
    info["codec"] = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
    header = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    info["frames_header"] = int(header) if math.isfinite(header) and header > 0 else 0
    fps = cap.get(cv2.CAP_PROP_FPS)
    # 0, NaN and absurd rates come from broken or variable-rate headers.
    info["fps"] = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else float("nan")


def _timing(info: dict, first: dict, last: dict | None, notes: list[str]) -> None:
    """Duration from frame timestamps when they exist (right for variable frame rates), else frames / fps."""
    n, fps = info["frames"], info["fps"]
    nominal = n / fps if math.isfinite(fps) else float("nan")
    span = (last["ms"] - first["ms"]) / 1000 if last and last["ok"] else float("nan")
    from_stamps = span * n / (n - 1) if n > 1 and math.isfinite(span) and span > 0 else float("nan")
    info["duration_s"] = from_stamps if math.isfinite(from_stamps) else nominal
    if not math.isfinite(from_stamps):
        return
    if not math.isfinite(fps):
        info["fps"] = n / from_stamps
        notes.append(f"no frame rate in the header; {info['fps']:.3g} fps estimated from frame timestamps")
    elif abs(from_stamps - nominal) > TIMING_TOLERANCE * nominal:
        notes.append(
            f"variable or wrong frame rate: frame timestamps span {from_stamps:.2f} s but {n} frames "
            f"at the header's {fps:g} fps last {nominal:.2f} s (duration taken from the timestamps)"
        )


def _frame_notes(info: dict, grey: bool) -> list[str]:
    """Non-fatal findings about the frames of a usable clip."""
    notes = []
    header, n_frames = info["frames_header"], info["frames"]
    if header == 0:
        notes.append("no frame count in the header; frames counted by decoding")
    elif header != n_frames:
        notes.append(f"header claims {header} frames but {n_frames} decode")
    if not info["last_frame_ok"]:
        notes.append("the last frame grabs but does not decode to an image")
    if grey:
        notes.append("grey frames (the colour channels are equal)")
    return notes


def _probe_decoding(path: str, info: dict, notes: list[str]) -> str:
    """Fill ``info`` from decoding; return why the clip is unusable ("" when it is usable)."""
    cap = cv2.VideoCapture(path)
    try:
        info["opened"] = bool(cap.isOpened())
        if not info["opened"]:
            return "cannot be decoded as video (no readable video stream; corrupt, truncated or not a video)"
        _read_header(cap, info)
        ok, frame = cap.read()
        if not ok or frame is None:
            return "cannot be decoded as video (the container opens but no frame decodes)"
        info["first_frame_ok"] = True
        info["height"], info["width"] = int(frame.shape[0]), int(frame.shape[1])
        grey, first = _is_grey(frame), _facts(frame, cap)
        n_frames, seen = info["frames_header"], None
        if 2 * VERIFY_TAIL_FRAMES < n_frames <= MAX_PLAUSIBLE_FRAMES:
            seen = _frames_after_header_check(cap, n_frames, first)
    finally:
        cap.release()
    if seen is None:  # no usable header: count by decoding, then visit the frames we need
        n_frames, seen = _frames_by_counting(path, first)
    last = seen.get(n_frames - 1)
    info["frames"], info["last_frame_ok"] = n_frames, bool(last and last["ok"])
    hashes = [seen.get(i, {}).get("hash") for i in _hash_indices(n_frames)]
    info["phash"] = ":".join("-" if h is None else f"{h:016x}" for h in hashes)
    if n_frames < MIN_FRAMES:
        return f"only {n_frames} decodable frame{'s' if n_frames != 1 else ''} (need at least {MIN_FRAMES})"
    notes.extend(_frame_notes(info, grey))
    _timing(info, first, last, notes)
    return ""


def probe_video(path: str | os.PathLike) -> dict:
    """Describe a video file and decide whether it is usable.

    Decodes the first frame, the frames hashed at ``PHASH_POSITIONS`` and the
    last few frames; the whole clip only when its header's frame count is
    missing or wrong. Memory does not grow with the clip's length.

    Args:
        path: video file.
    Returns:
        A dict (keys of ``empty_probe``): opened, codec (fourcc text),
        frames_header (count in the container, 0 if none), frames (verified
        decodable count), fps, duration_s (from frame timestamps when present),
        width, height, bytes, first_frame_ok, last_frame_ok, phash (dHashes of
        the sampled frames, see ``phash_distance``), warnings (non-fatal
        findings, "; "-separated), status ("ok" or "unusable") and reason
        (empty when ok, else a readable sentence). Never raises for a bad file.
    """
    path = str(path)
    info = empty_probe()
    info["reason"] = file_problem(path)
    if info["reason"]:
        return info
    info["bytes"] = os.path.getsize(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as err:
        info["reason"] = f"cannot read the file: {err.strerror or err}"
        return info
    notes: list[str] = []
    try:
        reason = _probe_decoding(path, info, notes)
    except cv2.error as err:  # a decoder failure must not stop an audit of thousands of files
        reason = f"OpenCV error while decoding: {str(err).strip().splitlines()[-1]}"
    if reason:
        info["reason"] = explain_decode_failure(path, head, info["bytes"], reason)
        return info
    if info["frames_header"] > info["frames"]:  # fewer frames than promised: say why when the file shows it
        structure = mp4_problem(path, info["bytes"])
        if structure:
            notes.append(structure)
    info["warnings"] = "; ".join(notes)  # each note is free of "; ", so the audit can split them again
    info["status"] = "ok"
    return info


# --------------------------------------------------------------------------- perceptual hashes


def parse_phash(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Frame hashes of a ``phash`` string as (uint64 values, bool valid) arrays of equal length.

    Args:
        text: ``probe_video``'s phash, hex frame hashes joined by ":" ("-" = flat or
            undecodable frame, "" = no hash at all).
    Raises:
        ValueError: text that is not such a string.
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_phash: expected a phash string like '0f1e...:-:...', got {text!r}")
    if not text:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    parts = text.split(":")
    try:
        values = [0 if p == "-" else int(p, 16) for p in parts]
    except ValueError:
        raise ValueError(
            f"parse_phash: {text!r} is not a phash (hex frame hashes joined by ':', '-' for none)"
        ) from None
    if any(v >= 1 << 64 for v in values):
        raise ValueError(f"parse_phash: {text!r} has a frame hash longer than 64 bits")
    return np.array(values, np.uint64), np.array([p != "-" for p in parts], bool)


def phash_distance(a: str, b: str, min_frames: int = 2) -> float:
    """Share of differing bits between two clips' perceptual hashes (0 = same look, ~0.5 = unrelated).

    Only frames hashed in both clips count.

    Args:
        a, b: ``phash`` strings from ``probe_video``.
        min_frames: fewest frames both must have hashed.
    Returns:
        The fraction in [0, 1], or NaN when fewer than ``min_frames`` frames compare.
    """
    (va, ma), (vb, mb) = parse_phash(a), parse_phash(b)
    if len(va) != len(vb):
        return float("nan")
    both = ma & mb
    if int(both.sum()) < min_frames:
        return float("nan")
    differing = np.bitwise_count(va[both] ^ vb[both]).sum()
    return float(differing) / (64 * int(both.sum()))
