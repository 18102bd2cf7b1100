"""Readable HTML for what the notebooks display, instead of raw reprs in the HTML reports.

One display layer: friendly headers, percents for fractions, units for durations, class names
for labels, 95% CI companions merged into one column, tables too wide for the page transposed or
split. :func:`install_display_formatters` registers it with IPython when a notebook starts
(IPython is imported only there).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nexara_lib.stages.formats import (
    LABEL_COLUMNS,
    column_kind,
    format_value,
    friendly_label,
    is_missing,
    value_context,
)

MAX_ROWS = 60  # longer tables show their first and last MAX_ROWS // 2 rows
MAX_ITEMS = 200  # longer lists show their first MAX_ITEMS items
PX_PER_CHAR, MAX_CHARS, CELL_PADDING_PX = 7.5, 40, 16
_CELL = (
    "border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; white-space: normal; "
    f"overflow-wrap: anywhere; word-break: break-word; max-width: {PX_PER_CHAR * MAX_CHARS + CELL_PADDING_PX:.0f}px;"
)
_TH = _CELL + " background: #f3f4f6; font-weight: 600; text-align: left;"
_TABLE = "border-collapse: collapse; margin: 0.4em 0 0.9em 0; font-size: 13px; line-height: 1.35;"
_CAPTION = "caption-side: top; text-align: left; font-weight: 600; padding: 2px 0 4px 0;"
_EMPTY = '<p class="nexara-empty"><em>none</em></p>'


class _Column(NamedTuple):
    header: str
    cells: list[str]
    right: bool = False


def _width(columns: list[_Column]) -> float:
    """Estimated pixel width: 7.5 px a character of the longest cell or header word (at most 40), + 16."""
    total = 0.0
    for col in columns:
        lines = [line for cell in col.cells for line in cell.splitlines()] + col.header.split()
        total += PX_PER_CHAR * min(max([len(line) for line in lines] + [1]), MAX_CHARS) + CELL_PADDING_PX
    return total


def _right(values: Any, name: Any) -> bool:
    """Numbers (not bools, not class labels) are right-aligned."""
    return (
        pd.api.types.is_numeric_dtype(values)
        and not pd.api.types.is_bool_dtype(values)
        and str(name).strip().lower() not in LABEL_COLUMNS
    )


def _index_column(index: pd.Index) -> _Column:
    names = [n for n in index.names if n is not None]
    header = " · ".join(friendly_label(n) for n in names)
    name = names[0] if len(names) == 1 else ""
    cells = [
        " · ".join(format_value(p, n) for p, n in zip(v, index.names, strict=True))
        if isinstance(v, tuple)
        else format_value(v, name)
        for v in index.tolist()
    ]
    return _Column(header, cells, _right(index, name))


def _data_columns(df: pd.DataFrame) -> list[_Column]:
    """One display column per data column; X with X_ci_low and X_ci_high becomes "X (95% CI)"."""
    raw = ["_".join(str(p) for p in c if str(p) != "") if isinstance(c, tuple) else str(c) for c in df.columns]
    position = {name: j for j, name in reversed(list(enumerate(raw)))}
    headers = [friendly_label(c) for c in df.columns]
    out = []
    for j, name in enumerate(raw):
        values = df.iloc[:, j].tolist()
        base = re.sub(r"_ci_(low|high)$", "", name)
        if base != name and base in position and base + "_ci_low" in position and base + "_ci_high" in position:
            continue  # shown with its value
        if name + "_ci_low" in position and name + "_ci_high" in position:
            low = df.iloc[:, position[name + "_ci_low"]].tolist()
            high = df.iloc[:, position[name + "_ci_high"]].tolist()
            cells = [
                format_value(v, name)
                if is_missing(lo) or is_missing(hi) or is_missing(v)
                else f"{format_value(v, name)} ({format_value(lo, name)} to {format_value(hi, name)})"
                for v, lo, hi in zip(values, low, high, strict=True)
            ]
            out.append(_Column(f"{headers[j]} (95% CI)", cells))
            continue
        out.append(_Column(headers[j], [format_value(v, name) for v in values], _right(df.iloc[:, j], name)))
    return out


def _fit(columns: list[_Column], index_shown: bool, width_px: float) -> list[list[_Column]]:
    """The table as parts that each fit ``width_px``: as is, transposed (<= 10 rows), or split."""
    if _width(columns) <= width_px or len(columns) < 2:
        return [columns]
    rows = len(columns[0].cells)
    if index_shown or not columns[0].right:
        key, rest = columns[0], columns[1:]
    else:
        key, rest = _Column("row", [str(i + 1) for i in range(rows)], True), columns
    if rows <= 10:
        flipped = [_Column(key.header, [c.header for c in rest])]
        flipped += [_Column(key.cells[i], [c.cells[i] for c in rest]) for i in range(rows)]
        if _width(flipped) <= width_px:
            return [flipped]
    parts: list[list[_Column]] = []
    current: list[_Column] = []
    for col in rest:
        if current and _width([key, *current, col]) > width_px:
            parts.append([key, *current])
            current = []
        current.append(col)
    return parts + [[key, *current]]


def _cell(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _render(columns: list[_Column], caption: Any = None) -> str:
    """One ``<table class="nexara-table">`` with inline styles; every header and cell escaped."""
    out = [f'<table class="nexara-table" data-estimated-width="{_width(columns):.0f}" style="{_TABLE}">']
    if caption:
        out.append(f'<caption style="{_CAPTION}">{_cell(str(caption))}</caption>')
    out.append(
        "<thead><tr>" + "".join(f'<th style="{_TH}">{_cell(c.header)}</th>' for c in columns) + "</tr></thead><tbody>"
    )
    for i in range(len(columns[0].cells)):
        shade = ' style="background: #f8f9fa;"' if i % 2 else ""
        out.append(
            f"<tr{shade}>"
            + "".join(
                f'<td style="{_CELL} text-align: {"right" if c.right else "left"};">{_cell(c.cells[i])}</td>'
                for c in columns
            )
            + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _empty(caption: Any = None) -> str:
    head = f'<p class="nexara-caption"><strong>{_cell(str(caption))}</strong></p>' if caption else ""
    return head + _EMPTY


def _kept(total: int) -> tuple[list[int], str]:
    """Positions of the rows shown (all, or the first and last MAX_ROWS // 2) and a note saying so."""
    if total <= MAX_ROWS:
        return list(range(total)), ""
    half = MAX_ROWS // 2
    note = f'<p class="nexara-note"><em>the first {half} and the last {half} of {total:,} rows are shown</em></p>'
    return list(range(half)) + list(range(total - half, total)), note


def table_html(df: Any, caption: Any = None, width_px: float = 1200) -> str:
    """A DataFrame as self-contained HTML: friendly headers, formatted and escaped cells.

    A non-default index is the first column; MultiIndex columns are joined with " · "; X with
    X_ci_low/X_ci_high becomes one "X (95% CI)" column; no rows gives "none". A table wider than
    ``width_px`` (estimated) is transposed when it has at most 10 rows and then fits, otherwise
    split into parts that each fit, each repeating the first (identifying) column.
    """
    if isinstance(df, pd.Series):
        df = df.to_frame()
    elif not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    index = df.index
    index_shown = not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None)
    if len(df) == 0 or (df.shape[1] == 0 and not index_shown):
        return _empty(caption)
    rows, note = _kept(len(df))
    df = df.iloc[rows]
    columns = ([_index_column(df.index)] if index_shown else []) + _data_columns(df)
    parts = _fit(columns, index_shown, width_px)
    if len(parts) == 1:
        return _render(parts[0], caption) + note
    return (
        "".join(_render(part, f"{caption or ''} (part {i} of {len(parts)})".strip()) for i, part in enumerate(parts, 1))
        + note
    )


def mapping_html(mapping_or_series: Mapping | pd.Series, caption: Any = None) -> str:
    """A dict or Series as a two-column key/value table (friendly keys, values formatted by key).

    A Series' string name becomes the caption when none is given; its index name, if any, heads
    the key column (such keys are data, shown as values rather than reworded).
    """
    series = mapping_or_series if isinstance(mapping_or_series, pd.Series) else None
    name = series.name if series is not None else None
    key_name = series.index.name if series is not None and series.index.nlevels == 1 else None
    if caption is None and isinstance(name, str):
        caption = friendly_label(name)
    items = list(mapping_or_series.items())
    if not items:
        return _empty(caption)
    if series is not None and key_name is None and isinstance(series.index, pd.RangeIndex):  # a list of notes
        head = f'<p style="{_CAPTION}">{_cell(str(caption))}</p>' if caption else ""
        return head + "<ul>" + "".join(f"<li>{_cell(format_value(v, name or ''))}</li>" for _, v in items) + "</ul>"
    positions, note = _kept(len(items))
    items = [items[i] for i in positions]
    keys = [
        format_value(k, key_name)
        if key_name is not None
        else friendly_label(k)
        if isinstance(k, (str, tuple))
        else format_value(k)
        for k, _ in items
    ]
    values = [format_value(v, value_context(k, key_name if column_kind(key_name or "") else name)) for k, v in items]
    header = "item" if key_name is None else friendly_label(key_name)
    return _render([_Column(header, keys), _Column("value", values)], caption) + note


def _paragraph(text: str) -> str:
    return f'<p class="nexara-text" style="white-space: pre-wrap; margin: 0.3em 0;">{_cell(text)}</p>'


def _container_html(obj: Mapping | list | tuple) -> str:
    """A dict of dicts or a list of dicts as a table, another dict as a key/value table, another
    list or tuple as one line "a, b, c"."""
    inner = list(obj.values() if isinstance(obj, Mapping) else obj)
    if inner and all(isinstance(item, Mapping) for item in inner):
        return table_html(
            pd.DataFrame.from_dict(dict(obj), orient="index") if isinstance(obj, Mapping) else pd.DataFrame(inner)
        )
    if isinstance(obj, Mapping):
        return mapping_html(obj)
    more = f" … ({len(obj):,} in all)" if len(obj) > MAX_ITEMS else ""
    return _paragraph(format_value(list(obj[:MAX_ITEMS])) + more)


def _quiet(render):
    """A formatter that gives up (None: IPython keeps the plain text) instead of raising."""

    def formatter(obj):
        try:
            return render(obj)
        except Exception:  # noqa: BLE001 - a display must never break a notebook
            return None

    return formatter


def install_display_formatters(shell: Any = None) -> bool:
    """Register the ``text/html`` formatters of this module with IPython.

    DataFrames become :func:`table_html`, Series and dicts :func:`mapping_html`, lists and tuples
    a line or a table, bools and floats a formatted paragraph, and ``str`` a plain paragraph (so
    ``display("text")`` shows no quotes). Returns False, registering nothing, outside IPython.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    scalar = lambda obj: _paragraph(format_value(obj))  # noqa: E731
    for kind, render in (
        (pd.DataFrame, table_html),
        (pd.Series, mapping_html),
        (dict, _container_html),
        (list, _container_html),
        (tuple, _container_html),
        (bool, scalar),
        (np.bool_, scalar),
        (float, scalar),
        (np.floating, scalar),
        (str, _paragraph),
    ):
        shell.display_formatter.formatters["text/html"].for_type(kind, _quiet(render))
    return True
