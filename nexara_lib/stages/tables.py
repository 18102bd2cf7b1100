"""Readable HTML for what the notebooks display, instead of raw reprs in the HTML reports.

One display layer: friendly headers, percents for fractions, units for durations, class names
for labels, 95% CI companions merged into one column, tables too wide for the page transposed or
split. :func:`install_display_formatters` registers it with IPython when a notebook starts
(IPython is imported only there).
"""

from __future__ import annotations

import datetime
import html
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nexara_lib.labels import CLASS_NAMES

KNOWN_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "acc_violent": "accuracy (violent)",
    "acc_nonviolent": "accuracy (non-violent)",
    "class_gap": "gap between the classes",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "auc": "AUC",
    "ece": "calibration error (ECE)",
    "fpr": "false-positive rate",
    "tpr": "true-positive rate",
    "tnr": "true-negative rate",
    "fnr": "false-negative rate",
    "f1": "F1",
    "f1_violent": "F1 (violent)",
    "precision_violent": "precision (violent)",
    "recall_violent": "recall (violent)",
    "n": "clips",
    "n_clips": "clips",
    "clips_per_s": "clips per second",
    "seconds_per_epoch": "time per epoch",
    "p_value": "p-value",
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "mcc": "MCC",
    "lr": "learning rate",
    "learning_rate": "learning rate",
    "brier": "Brier score",
    "fps": "frames per second",
    "clip_id": "clip",
    "class_name": "class",
    "label": "class",
    "y_true": "true class",
    "true_label": "true class",
    "y_pred": "predicted class",
    "pred": "predicted class",
    "prediction": "predicted class",
    "predicted_label": "predicted class",
    "prob": "probability of violence",
}
_ACRONYMS = {
    "auc": "AUC",
    "roc": "ROC",
    "pr": "PR",
    "f1": "F1",
    "ece": "ECE",
    "fpr": "FPR",
    "tpr": "TPR",
    "id": "ID",
    "tta": "TTA",
    "gpu": "GPU",
    "cpu": "CPU",
    "fps": "FPS",
    "mcc": "MCC",
    "ci": "CI",
    "acc": "accuracy",
    "val": "validation",
    "nonviolent": "non-violent",
    "prob": "probability",
    "num": "number",
    "pct": "percent",
    "avg": "average",
    "std": "std. dev.",
}
LABEL_COLUMNS = frozenset(
    {
        "label",
        "y_true",
        "y_pred",
        "true",
        "truth",
        "predicted",
        "prediction",
        "pred",
        "class",
        "true_label",
        "predicted_label",
    }
)
_PERCENT_WORDS = ("accuracy", "recall", "precision", "agreement", "coverage", "sensitivity", "specificity", "fraction")
_PERCENT_TOKENS = {"acc", "f1", "auc", "rate", "fpr", "tpr", "tnr", "fnr", "gap", "share", "auroc", "auprc"}
_DELTA_WORDS = ("delta", "diff", "change", "gain", "improvement")
_DECIMAL_TOKENS = {
    "prob",
    "probability",
    "probabilities",
    "threshold",
    "weight",
    "weights",
    "temperature",
    "loss",
    "ece",
    "brier",
    "logit",
}
_DURATION_TOKENS = {"seconds", "second", "sec", "secs", "latency", "time", "duration", "elapsed", "runtime"}
_COUNT_TOKENS = {
    "count",
    "clips",
    "frames",
    "videos",
    "samples",
    "epochs",
    "epoch",
    "rows",
    "files",
    "steps",
    "support",
    "errors",
    "batch",
    "size",
    "total",
}

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


def friendly_label(name: Any) -> str:
    """Words for a column or key name: ``balanced_accuracy`` -> ``balanced accuracy``.

    Known names come from :data:`KNOWN_LABELS`; otherwise underscores become spaces, a trailing
    ``_s``/``_ms`` is dropped (the value carries its unit), ``n_x`` becomes ``x`` and
    ``_ci_low``/``_ci_high`` become `` 95% CI low/high``. A string that already holds a space or a
    capital is returned unchanged; a tuple (MultiIndex) is joined with `` · ``.
    """
    if isinstance(name, tuple):
        return " · ".join(friendly_label(part) for part in name if str(part) != "")
    if not isinstance(name, str):
        return "" if name is None else str(name)
    if name in KNOWN_LABELS:
        return KNOWN_LABELS[name]
    if " " in name or name != name.lower() or not name.strip("_"):
        return name
    for suffix, words in (("_ci_low", " 95% CI low"), ("_ci_high", " 95% CI high"), ("_per_s", " per second")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return friendly_label(name[: -len(suffix)]) + words
    if name.startswith("n_") and len(name) > 2:
        return friendly_label(name[2:])
    words = [w for w in re.sub(r"(?<=.)_m?s$", "", name).split("_") if w]
    which = CLASS_NAMES[words.pop() == "violent"] if len(words) > 1 and words[-1] in ("violent", "nonviolent") else ""
    text = " ".join(_ACRONYMS.get(w, w) for w in words)
    return f"{text} ({which})" if which else text


def _kind(column: Any) -> str | None:
    """How numbers under this name are written: pvalue, small, number, ms, duration, delta,
    percent, decimal, count, or None (plain)."""
    name = re.sub(r"[^a-z0-9]+", "_", str(column).strip().lower()).strip("_")
    name = re.sub(r"_ci_(low|high)$", "", name)
    if not name:
        return None
    tokens = set(name.split("_"))
    if name in ("p", "p_val") or "p_value" in name or "pvalue" in tokens:
        return "pvalue"
    if "learning_rate" in name or "weight_decay" in name or tokens & {"lr", "eps", "epsilon"}:
        return "small"
    if re.search(r"per_s(ec|econd)?(_|$)|frame_rate|sample_rate|(clips|frames|windows|items|it)_s$", name) or tokens & {
        "fps",
        "throughput",
    }:
        return "number"
    if name.endswith(("_s", "_ms")):
        return "ms" if name.endswith("_ms") else "duration"
    if any(word in name for word in _DELTA_WORDS):
        return "delta"
    if any(word in name for word in _PERCENT_WORDS) or tokens & _PERCENT_TOKENS:
        return "percent"
    if tokens & _DECIMAL_TOKENS:
        return "decimal"
    if tokens & _DURATION_TOKENS:
        return "duration"
    if name == "n" or name.startswith("n_") or tokens & _COUNT_TOKENS:
        return "count"
    return None


def _is_missing(value: Any) -> bool:
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, (np.datetime64, np.timedelta64)) and bool(np.isnat(value)))
    )


def _as_label(value: Any) -> int | None:
    """0 or 1 when ``value`` is a class label (int, numpy int, integral float, "0"/"1"), else None."""
    if isinstance(value, str):
        return int(value.strip()) if value.strip() in ("0", "1") else None
    return int(value) if isinstance(value, (int, np.integer, float, np.floating)) and value in (0, 1) else None


def _context(key: Any, fallback: Any) -> Any:
    """The name that decides how a mapping's value is written: its key when that says something."""
    return key if isinstance(key, str) and (_kind(key) or str(key).strip().lower() in LABEL_COLUMNS) else fallback or ""


def format_seconds(seconds: float) -> str:
    """A duration, the same everywhere: "3.2 ms", "0.9 s", "42.0 s", "6 min 15 s", "1 h 02 min"."""
    size = abs(seconds)
    if size >= 100:
        minutes, secs = divmod(int(round(size)), 60)
        hours, minutes = divmod(minutes, 60)
        return ("-" if seconds < 0 else "") + (
            f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
        )
    return f"{seconds:.1f} s" if size >= 0.1 or size == 0 else f"{seconds * 1000:.1f} ms"


def format_number(value: float, kind: str | None) -> str:
    """A number written for its kind (``_kind``: percent, delta, duration, decimal, pvalue, count, ...; None =
    plain), never in scientific notation."""
    size, sign = abs(value), "< " if value > 0 else "> -"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind == "pvalue":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "small":
        return np.format_float_positional(value, precision=3, fractional=False, trim="-")
    if kind == "percent" and size <= 1:
        return f"{value * 100:.1f}%"
    if kind == "delta" and size <= 1:
        return f"{value * 100:+.1f} pp"
    if kind == "decimal":
        return sign + "0.001" if 0 < size < 0.001 else f"{value:,.3f}"
    if kind in ("duration", "ms"):
        return format_seconds(value / 1000 if kind == "ms" else value)
    if (kind == "count" and value.is_integer()) or size >= 1000:
        return f"{value:,.0f}"
    if size == 0 or size >= 0.0001:
        return f"{value:.{3 if size >= 1 else 4}f}".rstrip("0").rstrip(".")
    return sign + "0.0001"


def format_value(value: Any, column: Any = "") -> str:
    """Plain (unescaped) display text for one value; ``column`` (its column or key name) decides the unit.

    Fractions under metric names become percents ("93.5%"), deltas percentage points ("+1.6 pp"),
    probabilities/thresholds/weights/losses fixed decimals ("0.512", p-values "< 0.001"),
    durations seconds or milliseconds ("0.9 s", "3.2 ms"), ints get thousands separators, no float
    is ever written in scientific notation, missing values are "n/a", bools "yes"/"no", 0/1 under
    a label column the class names, lists "a, b, c" ("none" when empty), dicts "key: value, ...".
    """
    if _is_missing(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if str(column).strip().lower() in LABEL_COLUMNS and _as_label(value) is not None:
        return CLASS_NAMES[_as_label(value)]
    if isinstance(value, str):
        return value
    if isinstance(value, pd.Series):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return (
            ", ".join(f"{friendly_label(k)}: {format_value(v, _context(k, column))}" for k, v in value.items())
            or "none"
        )
    if isinstance(value, (np.ndarray, pd.Index)):
        value = np.asarray(value).ravel().tolist()
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, column) for v in value) or "none"
    if isinstance(value, (datetime.timedelta, np.timedelta64)):
        return format_seconds(pd.Timedelta(value).total_seconds())
    if isinstance(value, (int, np.integer)):
        kind = _kind(column)
        return format_number(float(value), kind) if kind in ("duration", "ms") else f"{int(value):,}"
    return format_number(float(value), _kind(column)) if isinstance(value, (float, np.floating)) else str(value)


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
        " · ".join(format_value(p, n) for p, n in zip(v, index.names))
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
                if _is_missing(lo) or _is_missing(hi) or _is_missing(v)
                else f"{format_value(v, name)} ({format_value(lo, name)} to {format_value(hi, name)})"
                for v, lo, hi in zip(values, low, high)
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
    parts, current = [], []
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
    series = isinstance(mapping_or_series, pd.Series)
    name = mapping_or_series.name if series else None
    key_name = mapping_or_series.index.name if series and mapping_or_series.index.nlevels == 1 else None
    if caption is None and isinstance(name, str):
        caption = friendly_label(name)
    items = list(mapping_or_series.items())
    if not items:
        return _empty(caption)
    if series and key_name is None and isinstance(mapping_or_series.index, pd.RangeIndex):  # a list of notes
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
    values = [format_value(v, _context(k, key_name if _kind(key_name or "") else name)) for k, v in items]
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
