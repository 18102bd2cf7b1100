"""The detector's per-frame products, computed once per sampled frame and shared by every window and stream.

A grid position ``g`` that windows sample (``deploy.windows``) has products per cell: a thumbnail (signal
checks), its motion window against its next decoded frame, the backbone input of every view a stream reads
there, and that input's embedding. They are computed as soon as the frame and its next frame have arrived,
every cell and product of a frame in one backbone call per encoder, and every window and stream that reads
them takes them from here: nothing is cut or encoded per window.

A product is stored under a key that holds everything its pixels depend on, so two windows or two streams
share it exactly when extraction would compute the same numbers for both:

- ``("frame", e, g)``: the whole cell (with its next frame for pair encoders) through encoder ``e``;
- ``("crop", e, g, window)``: the cell cut at a motion window (``motion_crop``);
- ``("view", e, g, name)``: a view of the frame alone (``tiles``);
- ``("image", e, g, ref, window, gain)``: the motion image against ``ref`` (``NEXT``, the next decoded frame,
  or a neighbouring position), cut at ``window`` (None: the whole cell).

A motion view's window and reference come from the next decoded frame, unless nothing moves against it:
then from the neighbouring sampled position of the window (``frame_views.motion_reference``), which can
differ between windows, so those products are keyed by that neighbour and computed once both positions
have arrived. A motion crop that finds no motion is the whole cell: the identity stream's product,
encoded once for both. A picture is held only while a product may still need it (its own, or as a
neighbour's reference); everything below every open window is forgotten (bounded memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from nexara_lib.deploy.grid import GridLayout, split_cells, thumbnail
from nexara_lib.deploy.window_features import MOTION_VIEWS, WindowFeatures
from nexara_lib.deploy.windows import Picked, WindowPlan
from nexara_lib.transforms.frame_views import crop_square, motion_window, neighbour_of, resize_square
from nexara_lib.transforms.motion_images import motion_image
from nexara_lib.transforms.registry import get_transform

NEXT = -1  # a motion reference: the position's next decoded frame (else a neighbouring position)
Window = tuple[int, int, int, int] | None  # (y, x, height, width) in cell pixels; None = nothing moves


@dataclasses.dataclass
class _CellStore:
    """One cell's products, by position."""

    thumbs: dict = dataclasses.field(default_factory=dict)  # g -> thumbnail
    motion: dict = dataclasses.field(default_factory=dict)  # (g, NEXT or neighbour, fraction) -> Window
    rows: dict = dataclasses.field(default_factory=dict)  # product key -> (regions, D) embedding rows


class FrameProducts:
    """Products of one source segment's sampled positions, per grid cell.

    Args:
        features: the run's streams and encoders.
        plan: the segment's window plan (which positions each window samples, per stream).
        layout: the grid the pictures are cut into.
    """

    def __init__(self, features: WindowFeatures, plan: WindowPlan, layout: GridLayout):
        self.features, self.plan, self.layout = features, plan, layout
        self.cells = [_CellStore() for _ in layout.cells]
        self.held: dict[int, Picked] = {}  # ready positions whose pictures may still be needed
        self.ready: set[int] = set()  # positions whose frame and next frame have been taken
        self.resolved: set[tuple[int, int]] = set()  # (g, neighbour) motion fallbacks computed
        self.still: set[int] = set()  # ready positions where nothing moved against the next frame in some cell
        self._uses: dict[int, dict[int, list[tuple[int, int | None]]]] = {}  # window -> g -> [(stream, neighbour)]
        self._split: dict[int, tuple[list, list]] = {}  # g -> (cells of its picture, cells of its next picture)
        streams = features.streams
        self._motion = [s.view is not None and s.transform in MOTION_VIEWS for s in streams]
        self._params = [dict(s.view_params) for s in streams]
        encoders = list(dict.fromkeys(features.encoder_key(s) for s in streams))
        self._encoder = [encoders.index(features.encoder_key(s)) for s in streams]

    # ------------------------------------------------------------------ taking frames
    def add(self, ready: Sequence[Picked], open_windows: Iterable[int]) -> None:
        """Products of newly ready positions (frame and next frame known) for every cell, then the motion
        fallbacks their neighbours allow; one backbone call per encoder for all of them."""
        if not ready:
            return
        windows = sorted(open_windows)
        for m in windows:
            if m not in self._uses:
                self._uses[m] = self._plan_uses(m)
        jobs: dict = {}
        for p in ready:
            self.held[p.g] = p
            self.ready.add(p.g)
            uses = [use for m in windows for use in self._uses[m].get(p.g, ())]
            cells, nexts = self._cells(p.g)
            fractions = {self._params[i]["fraction"] for i, _ in uses if self._motion[i]}
            for c, store in enumerate(self.cells):
                store.thumbs[p.g] = thumbnail(cells[c])
                for fraction in fractions:
                    window = motion_window(cells[c], nexts[c], fraction)
                    store.motion[(p.g, NEXT, fraction)] = window
                    if window is None:
                        self.still.add(p.g)
                for i, nb in uses:
                    self._queue(jobs, i, c, p.g, nb)
        for g, nb in self._pairs(windows):
            if g in self.still and nb in self.ready and (g, nb) not in self.resolved:
                self._fall_back(jobs, g, nb, windows)
        if jobs:
            encoded = self.features.encode([(key, i, inputs) for key, (i, inputs) in jobs.items()])
            for (c, key), rows in encoded.items():
                self.cells[c].rows[key] = rows
        self._release(windows)

    def _plan_uses(self, m: int) -> dict[int, list[tuple[int, int | None]]]:
        """Window ``m``'s positions -> the (stream, neighbouring position) pairs that read them."""
        uses: dict[int, list[tuple[int, int | None]]] = {}
        for i, targets in enumerate(self.plan.targets(m)):
            for j, g in enumerate(targets):
                k = neighbour_of(j, len(targets))
                uses.setdefault(g, []).append((i, None if k is None else targets[k]))
        return uses

    def _pairs(self, windows: Sequence[int]) -> list[tuple[int, int]]:
        """(position, neighbour) pairs a motion view of an open window may fall back on."""
        return list(
            dict.fromkeys(
                (g, nb)
                for m in windows
                for g, uses in self._uses[m].items()
                for i, nb in uses
                if self._motion[i] and nb is not None
            )
        )

    def _fall_back(self, jobs: dict, g: int, nb: int, windows: Sequence[int]) -> None:
        """Motion windows of ``g`` against its neighbour ``nb`` where nothing moved against its next frame,
        and the products of the motion views that read ``g`` beside ``nb``."""
        self.resolved.add((g, nb))
        cells, neighbours = self._cells(g)[0], self._cells(nb)[0]
        uses = [i for m in windows for i, other in self._uses[m].get(g, ()) if other == nb and self._motion[i]]
        for c, store in enumerate(self.cells):
            for fraction in {self._params[i]["fraction"] for i in uses}:
                if store.motion[(g, NEXT, fraction)] is None:
                    store.motion[(g, nb, fraction)] = motion_window(cells[c], neighbours[c], fraction)
            for i in uses:
                self._queue(jobs, i, c, g, nb)

    # ------------------------------------------------------------------ products
    def key(self, i: int, c: int, g: int, nb: int | None) -> tuple | None:
        """The product stream ``i`` reads in cell ``c`` at position ``g`` (neighbour ``nb`` in its window), or
        None while it waits for the neighbour."""
        stream, e = self.features.streams[i], self._encoder[i]
        if stream.view is None:
            return ("frame", e, g)
        if not self._motion[i]:
            return ("view", e, g, stream.key)
        params, store = self._params[i], self.cells[c]
        window, ref = store.motion[(g, NEXT, params["fraction"])], NEXT
        if window is None and nb is not None:
            if (g, nb, params["fraction"]) not in store.motion:
                return None
            window, ref = store.motion[(g, nb, params["fraction"])], nb
        if stream.transform == "motion_crop":
            return ("frame", e, g) if window is None else ("crop", e, g, window)
        return ("image", e, g, ref, window if stream.transform == "motion_image_crop" else None, params["gain"])

    def _queue(self, jobs: dict, i: int, c: int, g: int, nb: int | None) -> None:
        key = self.key(i, c, g, nb)
        if key is not None and key not in self.cells[c].rows and (c, key) not in jobs:
            jobs[(c, key)] = (i, self._inputs(i, c, key))

    def _inputs(self, i: int, c: int, key: tuple) -> np.ndarray:
        """The backbone input of product ``key`` in cell ``c``: (regions, S, S, 3), or (regions, 2, S, S, 3)."""
        stream = self.features.streams[i]
        size, pairs = stream.size, stream.pairs
        kind, g = key[0], key[2]
        cells, nexts = self._cells(g)
        frame, following = cells[c], nexts[c]
        if kind == "view":
            native = np.stack([frame, following])[None] if stream.reads_next else frame[None]
            out, _ = get_transform(stream.transform).apply(native, self._params[i], size=size, pairs=pairs)
            return out
        if kind == "image":
            ref, window, gain = key[3:]
            reference = following if ref == NEXT else self._cells(ref)[0][c]
            return motion_image(frame, reference, window, gain, size)[None]
        window = key[3] if kind == "crop" else None
        if pairs:
            return np.stack([crop_square(frame, window, size), crop_square(following, window, size)])[None]
        return crop_square(frame, window, size)[None] if window is not None else resize_square(frame, size)[None]

    def _cells(self, g: int) -> tuple[list, list]:
        """The cells of position ``g``'s picture and of its next picture (views, no copy)."""
        if g not in self._split:
            p = self.held[g]
            cells = split_cells(p.image, self.layout)
            nexts = split_cells(p.next_image, self.layout) if p.next_image is not None else cells
            self._split[g] = (cells, nexts)
        return self._split[g]

    # ------------------------------------------------------------------ windows
    def thumbs(self, c: int, positions: Iterable[int]) -> list[np.ndarray]:
        return [self.cells[c].thumbs[g] for g in positions]

    def window(self, m: int, c: int) -> np.ndarray:
        """Window ``m``'s (T, D) features in cell ``c``: every stream's products at its positions, concatenated."""
        parts = []
        for i, targets in enumerate(self.plan.targets(m)):
            rows = []
            for j, g in enumerate(targets):
                k = neighbour_of(j, len(targets))
                rows.append(self.cells[c].rows[self.key(i, c, g, None if k is None else targets[k])])
            parts.append(self.features.pooled(i, np.concatenate(rows), len(targets)))
        return np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ memory
    def _release(self, windows: Sequence[int]) -> None:
        """Let go of pictures no product can need any more: every motion fallback that involves the position (as
        the frame or as its neighbour) is computed, or not needed (something moved against the next frame)."""
        waiting: set[int] = set()
        for g, nb in self._pairs(windows):
            if (g not in self.ready or g in self.still) and (g, nb) not in self.resolved:
                waiting.update((g, nb))
        self._drop([g for g in self.held if g not in waiting])

    def _drop(self, positions: Iterable[int]) -> None:
        for g in list(positions):
            p = self.held.pop(g)
            self._split.pop(g, None)
            p.image = p.next_image = None

    def forget(self, lowest: int, open_windows: Iterable[int]) -> None:
        """Drop every product of positions below ``lowest`` (no open or future window reads them)."""
        for store in self.cells:
            store.thumbs = {g: v for g, v in store.thumbs.items() if g >= lowest}
            store.motion = {k: v for k, v in store.motion.items() if k[0] >= lowest}  # (g, ref, fraction)
            store.rows = {k: v for k, v in store.rows.items() if k[2] >= lowest}  # (kind, encoder, g, ...)
        self.ready = {g for g in self.ready if g >= lowest}
        self.still = {g for g in self.still if g >= lowest}
        self.resolved = {pair for pair in self.resolved if pair[0] >= lowest}
        self._drop([g for g in self.held if g < lowest])
        keep = set(open_windows)
        self._uses = {m: uses for m, uses in self._uses.items() if m in keep}

    @property
    def size(self) -> int:
        """Products, thumbnails and held pictures in memory (tests check it stays bounded)."""
        return sum(len(s.thumbs) + len(s.motion) + len(s.rows) for s in self.cells) + len(self.held)
