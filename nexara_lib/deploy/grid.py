"""Multi-camera monitor grids: one picture showing rows x cols cameras, cut into cells, and signal checks.

A CCTV monitor output (a 2x2 or 3x3 mosaic of cameras) is split into cells with the same bounds as the
``tiles`` view (``transforms.frame_views.tile_bounds``: remainders spread like ``np.array_split``), less
a ``margin`` cut from every side of a cell (borders, captions). Cells are views into the picture, so
splitting copies nothing. ``thumbnail`` and ``signal_problem`` tell a black or frozen camera (a cell
that shows nothing worth scoring) from a live one.
"""

from __future__ import annotations

import dataclasses
import re

import cv2
import numpy as np

from nexara_lib.config import SCHEMA
from nexara_lib.transforms.frame_views import tile_bounds

BLACK_MAX_STD = 3.0  # a black picture's thumbnail has a mean below black_level and a std below this


class GridError(ValueError):
    """A grid that cannot be parsed or laid out on a picture."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One camera of a grid: name ("r1c2", 1-based; "full" for a 1x1 grid), 0-based row/col, pixel bounds."""

    name: str
    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Cells of a rows x cols grid on a height x width picture, row-major."""

    rows: int
    cols: int
    margin: int
    height: int
    width: int
    cells: tuple[Cell, ...]


def parse_grid(text: str) -> tuple[int, int]:
    """A grid written as ROWSxCOLS.

    Args:
        text: "2x2", "3x3", "1x4" ("X" or spaces around it are fine).
    Returns:
        (rows, cols), both >= 1.
    Raises:
        GridError: anything else.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*", text) if isinstance(text, str) else None
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise GridError(
            f"grid {text!r} is not ROWSxCOLS with both at least 1; write it like 2x2, 3x3 or 1x4 (1x1 for one camera)"
        )
    return int(match.group(1)), int(match.group(2))


def _positive_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise GridError(f"grid layout: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def grid_layout(
    height: int,
    width: int,
    rows: int = 1,
    cols: int = 1,
    margin: int = SCHEMA["detect_grid_margin"].default,
    min_cell: int = SCHEMA["detect_min_cell"].default,
) -> GridLayout:
    """Cell bounds of a rows x cols grid on a picture.

    Args:
        height, width: the picture's size in pixels.
        rows, cols: the grid (1, 1: the whole picture, cell "full").
        margin: pixels cut from every side of every cell (monitor borders, captions).
        min_cell: the smallest cell side (after the margin) worth scoring (``detect_min_cell``).
    Returns:
        The ``GridLayout``, cells row-major.
    Raises:
        GridError: bad numbers, or a cell smaller than ``min_cell``, naming the cell size.
    """
    height, width = _positive_int("height", height, 1), _positive_int("width", width, 1)
    rows, cols = _positive_int("rows", rows, 1), _positive_int("cols", cols, 1)
    margin, min_cell = _positive_int("margin", margin, 0), _positive_int("min_cell", min_cell, 1)
    cells = []
    for row, (y0, y1) in enumerate(tile_bounds(height, rows)):
        for col, (x0, x1) in enumerate(tile_bounds(width, cols)):
            name = "full" if rows == cols == 1 else f"r{row + 1}c{col + 1}"
            cells.append(Cell(name, row, col, y0 + margin, y1 - margin, x0 + margin, x1 - margin))
    cell_h = min(c.y1 - c.y0 for c in cells)
    cell_w = min(c.x1 - c.x0 for c in cells)
    if min(cell_h, cell_w) < min_cell:
        after = f" after a {margin} px margin" if margin else ""
        raise GridError(
            f"a {rows}x{cols} grid of a {width}x{height} picture gives cells of "
            f"{max(cell_w, 0)}x{max(cell_h, 0)} px{after}, smaller than the {min_cell} px minimum "
            "(detect_min_cell); use a smaller grid, a larger picture or lower detect_min_cell"
        )
    return GridLayout(rows, cols, margin, height, width, tuple(cells))


def split_cells(image: np.ndarray, layout: GridLayout) -> list[np.ndarray]:
    """The picture's cells, row-major.

    Args:
        image: (H, W, ...) picture of the layout's size.
        layout: from ``grid_layout``.
    Returns:
        One view into ``image`` per cell (no copy).
    Raises:
        GridError: the picture's size differs from the layout's (lay the grid out again).
    """
    if image.ndim < 2 or image.shape[:2] != (layout.height, layout.width):
        got = f"{image.shape[1]}x{image.shape[0]}" if image.ndim >= 2 else f"shape {image.shape}"
        raise GridError(
            f"picture is {got} but the {layout.rows}x{layout.cols} grid was laid out for "
            f"{layout.width}x{layout.height}; lay the grid out again for the new size"
        )
    return [image[c.y0 : c.y1, c.x0 : c.x1] for c in layout.cells]


def thumbnail(image: np.ndarray, side: int = 32) -> np.ndarray:
    """A small grey copy of a picture for signal checks.

    Args:
        image: (H, W, 3) RGB or (H, W) grey, uint8.
        side: the thumbnail's side.
    Returns:
        (side, side) float32 grey levels 0-255 (INTER_AREA, so it averages rather than samples).
    """
    image = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if image.size == 0 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or side < 1:
        raise GridError(f"thumbnail: need an (H, W) or (H, W, 3) picture and side >= 1, got {image.shape}, {side}")
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.resize(np.ascontiguousarray(grey), (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def signal_problem(thumbs: list[np.ndarray], black_level: float = 12.0, frozen_diff: float = 0.5) -> str | None:
    """What is wrong with a camera's signal, from thumbnails of its recent frames.

    Args:
        thumbs: ``thumbnail``s of one cell, oldest first (spread over a few seconds).
        black_level: a mean grey level below this, with a std below ``BLACK_MAX_STD``, is black.
        frozen_diff: consecutive thumbnails whose mean absolute difference stays below this are frozen.
    Returns:
        "black" (every thumbnail black), "frozen" (at least two, no pair differs), or None.
    """
    if not thumbs:
        return None
    if all(float(t.mean()) < black_level and float(t.std()) < BLACK_MAX_STD for t in thumbs):
        return "black"
    if len(thumbs) >= 2 and all(
        float(np.abs(a.astype(np.float32) - b).mean()) < frozen_diff for a, b in zip(thumbs, thumbs[1:], strict=False)
    ):
        return "frozen"
    return None
