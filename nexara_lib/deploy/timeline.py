"""The detector's timeline figure: per source (and grid cell), window scores over time with the
alarm thresholds, alert episodes, windows without a score, and ground-truth violent segments.

Built as a ``matplotlib.figure.Figure`` (no pyplot state) and returned, never shown or saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.artist import Artist
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from nexara_lib.deploy.alert_scoring import track_lookup, violent_segments
from nexara_lib.deploy.alerts import AlarmPolicy, Episode, WindowScore

# Sources longer than this (s) get a time axis in minutes.
MINUTES_AFTER_S = 600.0
ROW_HEIGHT_IN = 1.9
# Where the ground-truth band lies, under the score axis (score units).
TRUTH_BAND = (-0.17, -0.07)
HATCHES = {"gap": "///", "no_signal": "...", "error": "xxx"}
STATE_LABELS = {"gap": "gap (frames missing)", "no_signal": "no signal", "error": "model error"}
COLORS = {
    "hit": "#c0392b",
    "score": "#1f5fa8",
    "on": "#c0392b",
    "off": "#7f8c8d",
    "alarm": "#f39c12",
    "truth": "#8e1b1b",
    "band": "#ecf0f1",
    "unknown": "#7f8c8d",
}


def _tracks(windows: Sequence[WindowScore], episodes: Sequence[Episode]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    items: list[WindowScore | Episode] = [*windows, *episodes]
    for item in items:
        seen.setdefault((item.source, item.cell), None)
    return list(seen)


def _runs(windows: list[WindowScore]) -> list[tuple[str, float, float]]:
    """Consecutive unscored windows of the same state merged into (state, start, end) spans."""
    spans: list[tuple[str, float, float]] = []
    for w in windows:
        if w.state == "scored":
            continue
        if spans and spans[-1][0] == w.state and w.start_t <= spans[-1][2]:
            spans[-1] = (w.state, spans[-1][1], max(spans[-1][2], w.end_t))
        else:
            spans.append((w.state, w.start_t, w.end_t))
    return spans


def _draw_scores(ax, windows: list[WindowScore], policy: AlarmPolicy, scale: float) -> None:
    """Each scored window as a horizontal segment over its span (red at or above the on-threshold),
    a thin line through the window centres, and the on/off threshold lines."""
    scored = [(w, w.score) for w in windows if w.state == "scored" and w.score is not None]
    if scored:
        segments = [[(w.start_t / scale, score), (w.end_t / scale, score)] for w, score in scored]
        colors = [COLORS["hit"] if score >= policy.on_threshold else COLORS["score"] for _, score in scored]
        ax.add_collection(LineCollection(segments, colors=colors, linewidths=2.2))
        centres = [w.score if w.state == "scored" else float("nan") for w in windows]  # broken at unknowns
        ax.plot([(w.start_t + w.end_t) / 2 / scale for w in windows], centres, color=COLORS["score"], lw=0.6, alpha=0.5)
    ax.axhline(policy.on_threshold, color=COLORS["on"], ls="--", lw=1, label=f"on {policy.on_threshold:.2f}")
    if policy.off_threshold != policy.on_threshold:
        ax.axhline(policy.off_threshold, color=COLORS["off"], ls=":", lw=1, label=f"off {policy.off_threshold:.2f}")


def _draw_unknown(ax, windows: list[WindowScore], scale: float) -> None:
    for state, start, end in _runs(windows):
        ax.axvspan(
            start / scale,
            end / scale,
            ymin=0.2,
            ymax=1.0,
            facecolor="none",
            edgecolor=COLORS["unknown"],
            hatch=HATCHES[state],
            lw=0,
            alpha=0.6,
        )


def _draw_episodes(ax, episodes: list[Episode], t_end: float, scale: float) -> None:
    """Alarms shaded from alarm_t to end_t (an open one to the end of the data)."""
    for e in episodes:
        end = e.end_t if e.end_t is not None else max(t_end, e.alarm_t)
        ax.axvspan(e.alarm_t / scale, end / scale, color=COLORS["alarm"], alpha=0.28, lw=0)
        ax.plot([e.alarm_t / scale], [1.0], marker="v", color=COLORS["alarm"], ms=7, clip_on=False)


def _draw_truth(ax, segments: list[dict] | None, t_end: float, scale: float) -> None:
    """The ground-truth band under the scores: violent segments dark on a light band."""
    low, high = TRUTH_BAND
    ax.broken_barh([(0, t_end / scale)], (low, high - low), facecolors=COLORS["band"])
    spans = [(a / scale, (b - a) / scale) for a, b in violent_segments(segments or [])]
    if spans:
        ax.broken_barh(spans, (low, high - low), facecolors=COLORS["truth"])
    ax.text(0, (low + high) / 2, "truth ", ha="right", va="center", fontsize=7, transform=ax.get_yaxis_transform())


def _legend_handles(policy: AlarmPolicy, states: set[str], with_truth: bool) -> list[Artist]:
    handles: list[Artist] = [
        Line2D([], [], color=COLORS["score"], lw=2.2, label="window score"),
        Line2D([], [], color=COLORS["hit"], lw=2.2, label="score >= on-threshold"),
        Line2D([], [], color=COLORS["on"], ls="--", label=f"on-threshold {policy.on_threshold:.2f}"),
    ]
    if policy.off_threshold != policy.on_threshold:
        handles.append(Line2D([], [], color=COLORS["off"], ls=":", label=f"off-threshold {policy.off_threshold:.2f}"))
    handles.append(Patch(facecolor=COLORS["alarm"], alpha=0.28, label="alarm (alarm_t to end)"))
    handles += [
        Patch(facecolor="none", edgecolor=COLORS["unknown"], hatch=HATCHES[s], label=STATE_LABELS[s])
        for s in HATCHES
        if s in states
    ]
    if with_truth:
        handles.append(Patch(facecolor=COLORS["truth"], label="violent (truth)"))
    return handles


def timeline_figure(
    windows: Sequence[WindowScore],
    episodes: Sequence[Episode],
    policy: AlarmPolicy,
    truth: Mapping[str, list[dict]] | None = None,
    title: str = "",
    policies: Mapping[tuple[str, str], AlarmPolicy] | None = None,
) -> Figure:
    """Scores, alarms and truth over time, one row per (source, cell).

    Args:
        windows: windows of one or more sources/cells.
        episodes: their alert episodes (e.g. every ``Confirmation.episodes``).
        policy: the policy that produced them (threshold lines, legend).
        truth: optional {"source/cell" or source or cell: [{"start_t", "end_t", "label"}]}; rows
            without an entry get no truth band.
        title: figure title (the policy is added below it).
        policies: {(source, cell): policy} of rows with a policy of their own (a calibrated camera's threshold).
    Returns:
        The Figure; its axes are in row order, each titled "source · cell".
    """
    tracks = _tracks(windows, episodes)
    fig = Figure(figsize=(11, 1.1 + ROW_HEIGHT_IN * max(1, len(tracks))), layout="constrained")
    k_of_n = "every window above the threshold" if policy.n == 1 else f"{policy.k} of {policy.n} windows"
    fig.suptitle(
        f"{title + chr(10) if title else ''}alarm when {k_of_n} >= {policy.on_threshold:.2f}, "
        f"cooldown {policy.cooldown_s:g} s",
        fontsize=10,
    )
    if not tracks:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no windows to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    t_end = max([w.end_t for w in windows] + [e.end_t or e.alarm_t for e in episodes] + [1e-9])
    if truth:
        t_end = max([t_end] + [float(s["end_t"]) for segs in truth.values() for s in segs])
    scale, unit = (60.0, "min") if t_end > MINUTES_AFTER_S else (1.0, "s")
    axes = fig.subplots(len(tracks), 1, sharex=True, squeeze=False)[:, 0]
    states, any_truth = set(), False
    for ax, (source, cell) in zip(axes, tracks, strict=True):
        mine = sorted((w for w in windows if (w.source, w.cell) == (source, cell)), key=lambda w: w.start_t)
        own_end = max([w.end_t for w in mine] + [1e-9])
        states |= {w.state for w in mine}
        _draw_unknown(ax, mine, scale)
        _draw_episodes(ax, [e for e in episodes if (e.source, e.cell) == (source, cell)], own_end, scale)
        own = (policies or {}).get((source, cell))
        _draw_scores(ax, mine, own or policy, scale)
        segments = track_lookup(truth, source, cell) if truth else None
        if segments is not None:
            any_truth = True
            _draw_truth(ax, segments, own_end, scale)
        ax.set_ylim(TRUTH_BAND[0] - 0.03 if segments is not None else -0.03, 1.05)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel("score")
        calibrated = f" · calibrated on-threshold {own.on_threshold:.2f}" if own else ""
        ax.set_title((f"{source} · {cell}" if cell else source) + calibrated, loc="left", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlim(0, t_end / scale)
    axes[-1].set_xlabel(f"time ({unit})")
    fig.legend(
        handles=_legend_handles(policy, states, any_truth),
        loc="outside lower center",
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    return fig
