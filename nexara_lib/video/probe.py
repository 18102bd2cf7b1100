"""Video probing, perceptual hashing and frame sampling with OpenCV.

Three jobs, all with bounded memory (a clip is never loaded whole):

* ``probe_video`` tells whether a file is a usable clip and what it holds
  (codec, header and verified frame count, fps, duration, resolution, size,
  whether the first and last frames decode, a perceptual hash, warnings). It
  never raises for a bad file: the audit lists bad files with a readable reason.
* ``phash_distance`` compares two perceptual hashes, so a re-encoded copy of a
  clip (another codec, quality or size) is recognised although its bytes differ.
* ``read_frames`` decodes the frames at given indices (optionally each with the
  frame right after it, for motion features) exactly, in one forward pass that
  grabs or seeks as this clip's timings say (see ``frame_reader``).

Reading stops after the last needed frame. Probing seeks only over long gaps and checks the
result, so a long clip with a plausible header is never decoded whole.
"""
from __future__ import annotations

import math
import os
import struct
import warnings

import cv2
import numpy as np

from nexara_lib.video.reader import VideoReadError, read_frames_at, target_size

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

_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                     (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"))


class ShortVideoWarning(UserWarning):
    """A video decodes fewer frames than its header claims; indices were re-mapped."""


def empty_probe() -> dict:
    """The probe record of a file nothing is known about yet (every key ``probe_video`` returns)."""
    return {"opened": False, "codec": "", "frames_header": 0, "frames": 0, "fps": float("nan"),
            "duration_s": float("nan"), "width": 0, "height": 0, "bytes": 0, "first_frame_ok": False,
            "last_frame_ok": False, "phash": "", "warnings": "", "status": "unusable", "reason": ""}


def _fourcc_text(value: float) -> str:
    code = int(value) if value and math.isfinite(value) else 0
    if code <= 0:
        return ""
    text = code.to_bytes(4, "little").decode("latin-1")
    # Some backends report a numeric codec id instead of four printable letters.
    return text.strip("\x00 ") if text.isprintable() else str(code)


# --------------------------------------------------------------------------- what a bad file is

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
        text = head[:err.start].decode("utf-8")
    if "<html" in text[:300].lower() or text.lstrip().lower().startswith("<!doctype html"):
        return "an HTML page (a failed download?)"
    return "a text file"


def _mp4_problem(path: str, size: int) -> str:
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
                return (f"truncated MP4: its {name!r} box needs {offset + box_size} bytes but the file has {size} "
                        "(an unfinished download or recording)")
            kinds.add(kind)
            offset += box_size
    if not kinds & {b"moov", b"moof"}:
        return ("incomplete MP4: no 'moov' box (the index of where frames are), so the recording or "
                "download did not finish")
    return ""


def _file_problem(path: str) -> str:
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


def _explain_failure(path: str, head: bytes, size: int, reason: str) -> str:
    """A decoding failure, made specific when the bytes show what the file really is."""
    kind = _sniff_content(head)
    if kind:
        suffix = os.path.splitext(path)[1] or "(no suffix)"
        return f"not a video: the file is {kind} with a {suffix} suffix; remove it or replace it with the real clip"
    structure = _mp4_problem(path, size)
    return f"{reason}: {structure}" if structure else reason


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
    seen = {}
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
        notes.append(f"variable or wrong frame rate: frame timestamps span {from_stamps:.2f} s but {n} frames "
                     f"at the header's {fps:g} fps last {nominal:.2f} s (duration taken from the timestamps)")


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
    info["reason"] = _file_problem(path)
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
        info["reason"] = _explain_failure(path, head, info["bytes"], reason)
        return info
    if info["frames_header"] > info["frames"]:  # fewer frames than promised: say why when the file shows it
        structure = _mp4_problem(path, info["bytes"])
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
        raise ValueError(f"parse_phash: {text!r} is not a phash (hex frame hashes joined by ':', "
                         "'-' for none)") from None
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


def sample_frame_indices(n_frames: int, t: int) -> np.ndarray:
    """Indices of ``t`` frames evenly spread over ``[0, n_frames - 1]``.

    Args:
        n_frames: frames in the clip (>= 1).
        t: frames to sample (>= 1); when ``t > n_frames`` indices repeat.
    Returns:
        int64 array of shape (t,), non-decreasing, first 0 and last n_frames - 1
        (for t >= 2).
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"sample_frame_indices: n_frames must be a positive integer, got {n_frames!r}; "
                         "probe the clip first and skip clips with no frames")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"sample_frame_indices: t (frames per clip) must be a positive integer, got {t!r}")
    return np.rint(np.linspace(0, int(n_frames) - 1, int(t))).astype(np.int64)


def read_sampled_frames(path: str | os.PathLike, indices, size=None, with_next: bool = False,
                        allow_seek: bool = True) -> tuple[np.ndarray, dict]:
    """Decode the frames at ``indices`` exactly (see ``frame_reader``) and say how.

    Same arguments and frames as ``read_frames``; no warning is raised, the record says it all.

    Returns:
        (frames, record): record has the read stats (strategy, grabs, seeks, seek_fallbacks,
        grab_ms, seek_ms), ``remapped`` (the clip decoded fewer frames than the indices assumed,
        so they were spread over ``frames_decoded`` frames instead) and ``frames_decoded``.
    """
    path = str(path)
    size = target_size(size)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(f"read_frames({path!r}): indices must be a non-empty 1-D sequence of integers >= 0, "
                         f"got {indices!r}")
    idx = idx.astype(np.int64)

    def needed_for(ix: np.ndarray) -> set[int]:
        wanted = set(ix.tolist())
        return wanted | {i + 1 for i in wanted} if with_next else wanted

    frames, stats = read_frames_at(path, needed_for(idx), size, allow_seek)
    record = {**stats.as_dict(), "remapped": False, "frames_decoded": None}
    if stats.ended_early and int(idx.max()) >= stats.decoded:  # not just the successor of the last frame
        decoded = stats.decoded
        if decoded == 0:
            raise VideoReadError(f"cannot read video {path!r}: no frame decodes (corrupt or unsupported codec); "
                                 "run the audit to list such files")
        # The pass reached the end, so ``decoded`` is the true count. Spread the request
        # over it the same way it was spread over the assumed count.
        assumed = int(idx.max()) + 1
        idx = np.rint(idx * ((decoded - 1) / max(assumed - 1, 1))).astype(np.int64)
        record.update(remapped=True, frames_decoded=decoded)
        missing = {i for i in needed_for(idx) - frames.keys() if i < decoded}
        if missing:
            more, _ = read_frames_at(path, missing, size, allow_seek=False)
            frames.update(more)
        if not set(idx.tolist()) <= frames.keys():
            raise VideoReadError(f"cannot read video {path!r}: frames stopped decoding on a second pass")
    shape = frames[int(idx[0])].shape
    if size is None and any(f.shape != shape for f in frames.values()):
        # Resolution changes inside a clip are rare; unify to the first frame's size.
        frames = {k: cv2.resize(f, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) if f.shape != shape else f
                  for k, f in frames.items()}
    if not with_next:
        return np.stack([frames[int(i)] for i in idx]), record
    # Only decoded frames are in ``frames``: no successor means i is the last frame.
    return np.stack([np.stack([frames[i], frames.get(i + 1, frames[i])]) for i in idx.tolist()]), record


def read_frames(path: str | os.PathLike, indices, size=None, with_next: bool = False) -> np.ndarray:
    """Decode the frames at ``indices``: exactly the frames a full sequential decode gives there.

    If the file decodes fewer frames than the indices assume (a truncated clip
    whose header over-counts), indices are re-mapped proportionally onto the
    frames that do decode and a ``ShortVideoWarning`` says so.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed), e.g. from
            ``sample_frame_indices``.
        size: None (native size), an int (square) or (width, height); frames are
            resized with INTER_AREA.
        with_next: also return the frame right after each index (the same frame
            again when it is the last one), for frame-difference/flow features.
    Returns:
        uint8 RGB array (T, H, W, 3), or (T, 2, H, W, 3) when ``with_next``.
    Raises:
        VideoReadError: nothing decodes.
        ValueError: bad indices or size.
    """
    frames, record = read_sampled_frames(path, indices, size, with_next)
    if record["remapped"]:
        assumed = int(np.max(indices))
        warnings.warn(ShortVideoWarning(
            f"{path}: only {record['frames_decoded']} frames decode but indices up to {assumed} were asked for; "
            f"indices re-mapped onto frames 0..{record['frames_decoded'] - 1}"), stacklevel=2)
    return frames
