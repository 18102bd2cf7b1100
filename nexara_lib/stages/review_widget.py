"""The alert review widget of notebook 09 (JupyterLab): each alert's clip and timeline, and its verdict.

Nothing is loaded until "Start review" is pressed, so a headless run (papermill) stores no clip in the
notebook. Then one alert at a time: the evidence clip (as WebM, which the browser plays, made on first
view), the window scores around the alarm, what the alert was, and three buttons - fight, not a fight,
unsure - that save the verdict at once (``stages.review.save_verdict``) and move on to the next alert
awaiting review. The keyboard works too: click into the key box and type f (fight), n (not a fight),
u (unsure), j (next), k (back). Buttons are reachable with Tab and Enter.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from nexara_lib.deploy.clips import browser_preview
from nexara_lib.deploy.evidence import CLIP_FILE, PREVIEW_FILE
from nexara_lib.deploy.reviews import VERDICT_WORDS, read_reviews
from nexara_lib.layout import RunLayout
from nexara_lib.stages.review import alert_timeline, save_verdict

KEYS = {"f": "fight", "n": "not_fight", "u": "unsure"}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _preview(alert: Mapping) -> bytes:
    """The alert's clip as WebM bytes a browser plays (made on first view, then kept beside the clip)."""
    folder = Path(alert["folder"])
    clip = folder / alert.get("clip", CLIP_FILE)
    if not clip.is_file():
        return b""
    try:
        return browser_preview(clip, folder / PREVIEW_FILE).read_bytes()
    except (OSError, ValueError):
        return b""


def _caption(alert: Mapping, position: int, total: int, verdict: str | None) -> str:
    threshold = alert.get("on_threshold")
    origin = "calibrated for this camera" if alert.get("threshold_from") == "site" else "the export's"
    rows = [
        f"<b>Alert {position} of {total}</b> · camera <b>{html.escape(str(alert.get('camera', alert['source'])))}</b>",
        f"alarm at {float(alert['alarm_t']):.1f} s of {html.escape(str(alert['source']))}"
        + (f" ({html.escape(str(alert['wall_time']))})" if alert.get("wall_time") else ""),
        f"peak score {float(alert['peak']):.2f}"
        + (f" · on-threshold {threshold:.2f} ({origin})" if threshold is not None else ""),
        f"verdict: <b>{VERDICT_WORDS[verdict] if verdict else 'awaits review'}</b>",
    ]
    return "<br>".join(rows)


def alert_review(alerts: Sequence[Mapping], layout: RunLayout, reviewer: str = ""):
    """The review widget (an ``ipywidgets.VBox``) over ``alerts`` (``stages.review.run_alerts``).

    Args:
        alerts: alerts with evidence, oldest first.
        layout: the run folder (verdicts go to ``layout.reviews``).
        reviewer: optional name or initials written with each verdict.
    """
    import ipywidgets as w  # lazy: the library imports without the notebook stack

    waiting = sum(read_reviews(layout.reviews).verdict(a["alert_id"]) is None for a in alerts)
    start = w.Button(
        description=f"Start review ({waiting} of {len(alerts)} await review)",
        button_style="primary",
        layout=w.Layout(width="auto"),
        disabled=not alerts,
    )
    box = w.VBox([start])
    if not alerts:
        box.children = [w.HTML("<i>No alert with evidence to review.</i>")]
        return box
    state = {"i": 0}
    caption, status = w.HTML(), w.HTML()
    video = w.Video(format="webm", autoplay=True, loop=True, controls=True, width=480)
    timeline = w.Image(format="png", width=560)
    buttons = {
        verdict: w.Button(description=f"{VERDICT_WORDS[verdict].capitalize()} ({key})", layout=w.Layout(width="auto"))
        for key, verdict in KEYS.items()
    }
    buttons["fight"].button_style, buttons["not_fight"].button_style = "danger", "success"
    back, forward = w.Button(description="◀ back (k)"), w.Button(description="next ▶ (j)")
    keys = w.Text(
        placeholder="click here, then type f, n, u (verdict) or j, k (next, back)",
        continuous_update=True,
        layout=w.Layout(width="32em"),
    )

    def show(i: int) -> None:
        state["i"] = i % len(alerts)
        alert = alerts[state["i"]]
        video.value = _preview(alert)
        timeline.value = _png(alert_timeline(alert))
        verdict = read_reviews(layout.reviews).verdict(alert["alert_id"])
        caption.value = _caption(alert, state["i"] + 1, len(alerts), verdict)

    def next_waiting() -> None:
        reviews = read_reviews(layout.reviews)
        order = [(state["i"] + k) % len(alerts) for k in range(1, len(alerts) + 1)]
        pending = [i for i in order if reviews.verdict(alerts[i]["alert_id"]) is None]
        show(pending[0] if pending else (state["i"] + 1) % len(alerts))
        if not pending:
            status.value += " Every alert is reviewed."

    def decide(verdict: str) -> None:
        alert = alerts[state["i"]]
        save_verdict(layout, alert, verdict, reviewer)
        status.value = f"saved: alert {state['i'] + 1} is <b>{VERDICT_WORDS[verdict]}</b>."
        next_waiting()

    def on_key(change) -> None:
        typed = str(change["new"])[-1:].lower()
        if not typed:
            return
        keys.value = ""
        if typed in KEYS:
            decide(KEYS[typed])
        elif typed in "jk":
            show(state["i"] + (1 if typed == "j" else -1))

    def begin(_) -> None:
        box.children = [caption, video, timeline, w.HBox(list(buttons.values())), w.HBox([back, forward, keys]), status]
        reviews = read_reviews(layout.reviews)
        first = [i for i, a in enumerate(alerts) if reviews.verdict(a["alert_id"]) is None]
        show(first[0] if first else 0)

    for verdict, button in buttons.items():
        button.on_click(lambda _, v=verdict: decide(v))
    back.on_click(lambda _: show(state["i"] - 1))
    forward.on_click(lambda _: show(state["i"] + 1))
    keys.observe(on_key, names="value")
    start.on_click(begin)
    return box
