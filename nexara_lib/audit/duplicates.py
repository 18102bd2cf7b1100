"""Duplicate clusters (``find_duplicates``): clips with identical bytes, or near-identical frames
(a re-encoded copy) by their perceptual hashes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from nexara_lib.audit.links import file_sha1, linked_units
from nexara_lib.video.probe import PHASH_POSITIONS, parse_phash

# Two clips whose perceptual hashes differ in at most this share of bits are near-duplicates.
# Measured on the 177 real surveillance clips: re-encodes (other codec, JPEG quality 5,
# a quarter of the size, half the frame rate) stay <= 0.04; clips from different source
# recordings are >= 0.20 apart; a few clips cut from one static camera fall below it, and
# grouping those together is what leakage control wants anyway.
PHASH_MAX_DISTANCE = 0.05


def _perceptual_pairs(phashes: list[str], max_distance: float, block_bytes: int = 32 << 20) -> list[tuple]:
    """(i, j, distance) for every pair of clips whose perceptual hashes are within ``max_distance``.

    All pairs are compared in row blocks of bounded memory; a clip needs at least
    two hashed (non-flat) frames in common with another to be compared.
    """
    k = len(PHASH_POSITIONS)
    rows, values, masks = [], [], []
    for i, text in enumerate(phashes):
        try:
            v, m = parse_phash(text) if isinstance(text, str) else (None, None)
        except ValueError:
            continue
        if v is not None and len(v) == k and m.sum() >= 2:
            rows.append(i)
            values.append(v)
            masks.append(m)
    if len(rows) < 2:
        return []
    value_rows, mask_rows = np.stack(values), np.stack(masks)
    step = max(1, block_bytes // (len(rows) * k * 8))
    pairs = []
    for lo in range(0, len(rows), step):
        # Rows lo..lo+step against columns lo..end: the upper triangle, each pair once.
        both = mask_rows[lo : lo + step, None, :] & mask_rows[None, lo:, :]
        differing = np.bitwise_count(value_rows[lo : lo + step, None, :] ^ value_rows[None, lo:, :])
        bits = np.where(both, differing, 0).sum(-1)
        frames = both.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = bits / (64.0 * frames)
        hit_a, hit_b = np.nonzero((frames >= 2) & (distance <= max_distance))
        for a, b in zip(hit_a.tolist(), hit_b.tolist(), strict=True):
            if b > a:  # never a clip with itself
                pairs.append((rows[lo + a], rows[lo + b], float(distance[a, b])))
    return pairs


MAX_PAIRS_LISTED = 50  # per cluster in audit.json; a file copied 100 times would list 4950


def _cluster_listing(
    clusters: list[list[int]], keys: list[str], sha1: list[str], perceptual: list[tuple]
) -> list[dict]:
    """Clusters as audit.json shows them: their clips and the pairs that joined them."""
    cluster_of = {r: c for c, rows in enumerate(clusters) for r in rows}
    pairs: list[list[dict]] = [[] for _ in clusters]
    for c, rows in enumerate(clusters):
        by_hash: dict[str, list[int]] = {}
        for r in rows:
            if sha1[r]:
                by_hash.setdefault(sha1[r], []).append(r)
        for same in by_hash.values():  # a chain says it all: a = b, b = c, ...
            pairs[c].extend(
                {"a": keys[a], "b": keys[b], "kind": "exact", "distance": 0.0}
                for a, b in zip(same, same[1:], strict=False)
            )
    for i, j, distance in perceptual:
        if i in cluster_of:
            pairs[cluster_of[i]].append(
                {"a": keys[i], "b": keys[j], "kind": "perceptual", "distance": round(distance, 4)}
            )
    listing = []
    for c, rows in enumerate(clusters):
        kinds = {p["kind"] for p in pairs[c]}
        listing.append(
            {
                "cluster": f"dup-{c + 1:04d}",
                "kind": "+".join(sorted(kinds)),
                "clips": [keys[r] for r in rows],
                "pairs": pairs[c][:MAX_PAIRS_LISTED],
                "pairs_total": len(pairs[c]),
            }
        )
    return listing


def find_duplicates(clips: pd.DataFrame, max_distance: float = PHASH_MAX_DISTANCE) -> pd.DataFrame:
    """Cluster clips that are the same content: identical bytes, or near-identical frames (a re-encode).

    Args:
        clips: needs path, source and rel_path; uses sha1 (computed when
            missing), phash (from ``probe_clips``) and status (only "ok" clips
            are compared when present).
        max_distance: largest share of differing perceptual-hash bits for two
            clips to count as near-duplicates (0 = the same look only).
    Returns:
        A copy with dup_cluster ("dup-0001", ...; "" when the clip has no
        duplicate), duplicate (bool), duplicate_kind ("exact": another clip
        has the same bytes; "perceptual": only look-alikes) and duplicate_of
        ("source/rel_path" of the cluster's best copy: most pixels, then most
        bytes; "" for that one).
        ``attrs["duplicate_clusters"]`` lists each cluster: id, kind ("exact",
        "perceptual" or "exact+perceptual"), clips and the pairs that joined it.
    Raises:
        ValueError: max_distance outside [0, 0.5).
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or not 0 <= max_distance < 0.5:
        raise ValueError(
            f"find_duplicates: max_distance must be in [0, 0.5), got {max_distance!r}; unrelated "
            f"clips differ in about half their bits (default {PHASH_MAX_DISTANCE})"
        )
    out = clips.copy()
    if "sha1" not in out:
        out["sha1"] = [file_sha1(p) for p in out["path"]]
    keys = (out["source"].astype(str) + "/" + out["rel_path"].astype(str)).tolist()
    usable = (out["status"] == "ok").to_numpy() if "status" in out else np.ones(len(out), bool)
    # Unusable files are never compared: two empty files share a SHA-1 but are no clip.
    sha1 = [h if ok and isinstance(h, str) else "" for h, ok in zip(out["sha1"], usable, strict=True)]
    phash = [p if ok else "" for p, ok in zip(out["phash"], usable, strict=True)] if "phash" in out else [""] * len(out)
    perceptual = [(i, j, d) for i, j, d in _perceptual_pairs(phash, max_distance) if not sha1[i] or sha1[i] != sha1[j]]
    units = linked_units([sha1], pairs=[(i, j) for i, j, _ in perceptual])
    members: dict[int, list[int]] = {}
    for i, unit in enumerate(units):
        if usable[i]:
            members.setdefault(int(unit), []).append(i)
    # The cluster's first clip, the one the others are "duplicate_of", is its best copy: most
    # pixels, then most bytes (least compressed), then name.
    pixels = (out["width"] * out["height"]).tolist() if {"width", "height"} <= set(out) else [0] * len(out)
    size = out["bytes"].tolist() if "bytes" in out else [0] * len(out)
    clusters = sorted(
        (sorted(rows, key=lambda r: (-pixels[r], -size[r], keys[r])) for rows in members.values() if len(rows) > 1),
        key=lambda rows: min(keys[r] for r in rows),
    )
    copies = Counter(h for h in sha1 if h)
    cluster_id, kind, first_of = [""] * len(out), [""] * len(out), [""] * len(out)
    for number, rows in enumerate(clusters, start=1):
        for r in rows:
            cluster_id[r] = f"dup-{number:04d}"
            kind[r] = "exact" if sha1[r] and copies[sha1[r]] > 1 else "perceptual"
            first_of[r] = keys[rows[0]] if r != rows[0] else ""
    out["dup_cluster"], out["duplicate_kind"], out["duplicate_of"] = cluster_id, kind, first_of
    out["duplicate"] = out["dup_cluster"] != ""
    out.attrs.update(clips.attrs)
    out.attrs["duplicate_clusters"] = _cluster_listing(clusters, keys, sha1, perceptual)
    out.attrs["duplicate_method"] = {
        "exact": "SHA-1 of the file bytes",
        "perceptual": f"64-bit dHash of {len(PHASH_POSITIONS)} frames at "
        f"{'/'.join(f'{p:.0%}' for p in PHASH_POSITIONS)} of the clip; near-duplicates differ in at "
        f"most {max_distance:.0%} of the bits of the frames both hashed (flat frames are not hashed)",
        "max_distance": max_distance,
    }
    return out
