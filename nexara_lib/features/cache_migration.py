"""Feature cache entries written under the older, path-based names: carried over once, never silently lost.

Until cache names became path-free, a clip's name hashed its absolute path (``legacy_clip_cache_name``); now
it hashes the clip id and content facts (``cache.clip_cache_name``), so a dataset that moves, is mounted
elsewhere or is read from another output root keeps its cache. ``migrate_legacy_entries`` runs before
extraction decides what to compute, for the clips whose entry is missing under the new name:

* a clean, TTA-view or stream-view entry under the clip's old name holds exactly what the new name would
  (decoding does not depend on where the file lies): it is renamed (checksum file first, then the ``.npy``,
  the commit), its read record is copied under the new name, and nothing is computed;
* an augmentation copy's entry was drawn with its old name as the key, so its draws depended on where the
  dataset lay: it is moved aside into ``bad/`` and computed again with the path-free draws;
* a clip with an entry under another name of its clip id that is neither (cached at a location the dataset
  no longer has, before this scheme, or for other file contents) is computed again and counted.

Likewise a stream whose backbone weights are a local file used to be keyed by the file's modification time; now
by a hash of its bytes (``backbones.weights_identity``). ``migrate_legacy_stream_dir`` renames the stream's
folder under the old key (the same file: same name, size and modification time) to the new key, once.

Each outcome is counted, with its reason, in the extraction summary (``legacy``; ``describe_legacy`` says it
in words for the notebook and the command line).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nexara_lib.features.backbones import weights_identity
from nexara_lib.features.cache import clip_name_prefix
from nexara_lib.features.cache_entries import quarantine, sum_path
from nexara_lib.io import read_json, write_json_atomic

RENAMED_REASON = (
    "cache names no longer depend on where the dataset lies (they used to hash the clip's absolute path); "
    "the features do not depend on it, so the entry was renamed, not computed again"
)
REDRAWN_REASON = (
    "augmentation copy drawn from the clip's absolute path (the old cache name seeded its draws); computed again "
    "with draws from the clip id and content, the same at every location"
)
UNMATCHED_REASON = (
    "an entry of this clip id lies under another name: cached at a location the dataset no longer has before "
    "names stopped depending on it, or for other file contents; computed again"
)
EXAMPLES = 5  # file names listed per outcome in the summary


def legacy_clip_cache_name(row) -> str:
    """The name ``clip_cache_name`` gave a clip before names became path-free (absolute path, bytes, sha1, frames)."""
    ident = f"{row['path']}|{row.get('bytes', '')}|{row.get('sha1', '')}|{row.get('frames', '')}"
    return f"{clip_name_prefix(row['clip_id'])}{hashlib.sha1(ident.encode('utf-8')).hexdigest()[:10]}.npy"


def legacy_stream_dir(stream, cache_root: str | Path) -> Path | None:
    """Where ``stream``'s cache lay when a local weights file was keyed by its modification time (None: the
    weights are not a file, or the file is gone)."""
    if stream.weights in ("imagenet", "none"):
        return None
    try:
        stat = Path(stream.weights).stat()
        prefix = f"{stream.backbone}-{weights_identity(stream.weights)}-"
    except OSError:
        return None
    old = f"{stream.backbone}-{Path(stream.weights).stem}-{stat.st_size}-{int(stat.st_mtime)}-"
    return Path(cache_root) / (old + stream.key.removeprefix(prefix)) if stream.key.startswith(prefix) else None


def migrate_legacy_stream_dir(stream, cache_root: str | Path) -> str | None:
    """Rename ``stream``'s cache folder from its old key (weights file keyed by modification time) to its key,
    when only the old one exists; returns the old key then, else None."""
    old, new = legacy_stream_dir(stream, cache_root), stream.cache_dir(cache_root)
    if old is None or old == new or not old.is_dir() or new.exists():
        return None
    os.replace(old, new)
    return old.name


def _read_records(cache_dir: Path) -> dict[str, dict]:
    """The newest read record per file name in ``clips.jsonl``, as written (lines cut short are skipped)."""
    records: dict[str, dict] = {}
    path = cache_dir / "clips.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "file" in entry:
            records[str(entry["file"])] = entry
    return records


def _rename_entry(source: Path, target: Path) -> None:
    """Move an entry's checksum file, then its ``.npy`` (the commit): a crash between leaves a checksum file
    without its ``.npy`` under the new name (not cached) and the ``.npy`` under the old one, which the next
    run moves."""
    try:
        os.replace(sum_path(source), sum_path(target))
    except FileNotFoundError:  # moved by an interrupted run, or never written
        pass
    os.replace(source, target)


def migrate_legacy_entries(cache_dir: str | Path, jobs, legacy_names, redraw: bool) -> dict:
    """Carry entries under the clips' old names over to their new names (see the module docstring).

    Args:
        cache_dir: one stream's cache folder.
        jobs: the extraction's ``ClipJob``s (``name`` is the new name).
        legacy_names: each job's old name (``legacy_clip_cache_name`` of its manifest row), in job order.
        redraw: the stream is an augmentation copy (old entries are moved aside and computed again).
    Returns:
        ``{renamed, recomputed, unmatched}``, each ``{count, reason, examples}`` (examples: new file names).
    """
    cache_dir = Path(cache_dir)
    outcome: dict[str, list[str]] = {"renamed": [], "recomputed": [], "unmatched": []}
    missing = [(job, old) for job, old in zip(jobs, legacy_names, strict=True) if not (cache_dir / job.name).exists()]
    if missing and cache_dir.is_dir():
        records = _read_records(cache_dir)
        failures = read_json(cache_dir / "failures.json", {})
        current = {job.name for job in jobs}
        others: dict[str, set[str]] = {}  # clip name prefix -> names of entries no job has now
        for path in cache_dir.glob("*.npy"):
            if path.name not in current:
                others.setdefault(path.name[: path.name.rfind("-") + 1], set()).add(path.name)
        log = open(cache_dir / "clips.jsonl", "a", encoding="utf-8")
        try:
            for job, old in missing:
                source = cache_dir / old
                if old != job.name and source.exists():
                    if redraw:
                        quarantine(source, REDRAWN_REASON)
                        outcome["recomputed"].append(job.name)
                        continue
                    if old in records:  # the record first: a record without an entry is skipped by readers
                        log.write(json.dumps({**records[old], "file": job.name, "renamed_from": old}) + "\n")
                        log.flush()
                    _rename_entry(source, cache_dir / job.name)
                    outcome["renamed"].append(job.name)
                elif others.get(clip_name_prefix(job.clip_id), set()) - {old}:
                    outcome["unmatched"].append(job.name)
                if old in failures and job.name not in failures:  # a clip that failed to decode stays known
                    failures[job.name] = failures.pop(old)
                    write_json_atomic(cache_dir / "failures.json", failures)
        finally:
            log.close()
    reasons = {"renamed": RENAMED_REASON, "recomputed": REDRAWN_REASON, "unmatched": UNMATCHED_REASON}
    return {
        key: {"count": len(names), "reason": reasons[key], "examples": names[:EXAMPLES]}
        for key, names in outcome.items()
    }


def describe_legacy(summary: dict) -> str | None:
    """One plain sentence about a stream's cache entries found under old names (None when there were none)."""
    legacy = summary.get("legacy") or {}
    parts = []
    if legacy.get("renamed", {}).get("count"):
        parts.append(
            f"{legacy['renamed']['count']} cached clips were found under their old, location-based names and "
            "renamed (their features do not depend on where the data lies, so nothing was computed again)"
        )
    if legacy.get("recomputed", {}).get("count"):
        parts.append(
            f"{legacy['recomputed']['count']} augmented copies were computed again: their random changes used to "
            "depend on where the data lay, now only on the clip and the seed (the old files are kept in bad/)"
        )
    if legacy.get("unmatched", {}).get("count"):
        parts.append(
            f"{legacy['unmatched']['count']} clips were computed again although an older entry of theirs exists: it "
            "was cached at a location the data no longer has, or for different file contents"
        )
    if legacy.get("stream_folder_renamed_from"):
        parts.append(
            "its folder was renamed from the old key, which named the weights file by its modification time "
            "(now by its content), so its clips were kept"
        )
    if not parts:
        return None
    return f"Feature cache '{summary.get('key', '')}': " + "; ".join(parts) + "."
