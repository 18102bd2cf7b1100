"""Notebook 07 glue, its second half: the detector on long test videos and a 2x2 camera grid assembled from the
run's test clips (known fights), with and without k-of-n confirmation, and what 07 publishes
(``deploy.json``, headline, summary). Alerts keep their evidence (clip, snapshot, window scores) for review
in notebook 09. ``stages.deploy`` re-exports these names for the notebook."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown

from nexara_lib.deploy.alert_scoring import compare_policies, score_alerts
from nexara_lib.deploy.detect import DetectionResult, detect, expected_from_run
from nexara_lib.deploy.montage import assemble_grid_video, assemble_long_video
from nexara_lib.deploy.timeline import timeline_figure
from nexara_lib.io import write_json_atomic
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import load_manifest, run_recipe
from nexara_lib.stages.formats import stream_set_words
from nexara_lib.stages.headline import record_headline, record_summary

# The long test video (at most `detect_test_clips` test clips): blocks of CALM_RUN non-violent clips then VIOLENT_RUN
# violent ones (fights of a few seconds, rarer than calm stretches); each grid camera shows the same blocks shifted.
CALM_RUN, VIOLENT_RUN = 4, 3


def formatted(frame: pd.DataFrame, formats: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``frame`` for reading: numbers as fixed decimals or percents, booleans as yes/no."""
    out = frame.copy()
    for column, fmt in formats.items():
        if column in out.columns:
            out[column] = [
                ("yes" if v else "no")
                if fmt == "yes/no"
                else ("n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt))
                for v in out[column]
            ]
    return out


def tradeoff_view(tradeoff: pd.DataFrame) -> pd.DataFrame:
    """The confirmation trade-off as a reader sees it."""
    return formatted(tradeoff, {"false alarms per hour": ".1f", "median onset-to-alarm (s)": ".1f"})


@dataclasses.dataclass
class TestVideos:
    """The assembled test videos and their ground truth (per source name and cell)."""

    long_video: Path
    grid_video: Path
    truth: dict  # (source, cell) -> [{"start_t", "end_t", "label", "clip"}]
    duration_s: float


def fight_pattern(
    rows: pd.DataFrame, limit: int, calm_run: int = CALM_RUN, violent_run: int = VIOLENT_RUN
) -> list[tuple[str, int]]:
    """Test clips in blocks of ``calm_run`` non-violent clips then ``violent_run`` violent ones (a fight of a
    few seconds between longer calm stretches), while both classes last, at most ``limit`` clips."""
    calm = rows[rows["label"] == 0]["path"].tolist()
    violent = rows[rows["label"] == 1]["path"].tolist()
    order: list[tuple[str, int]] = []
    while calm and violent and len(order) < limit:
        order += [(calm.pop(0), 0) for _ in range(min(calm_run, len(calm)))]
        order += [(violent.pop(0), 1) for _ in range(min(violent_run, len(violent)))]
    return order[:limit]


def build_test_videos(params: Mapping, layout: RunLayout, clips: int | None = None) -> TestVideos:
    """A long video of test clips (calm stretches and fights, ``fight_pattern``, known boundaries) and a 2x2 grid
    whose four cameras show the same clips, each starting at another block."""
    rows = load_manifest(layout)
    rows = rows[rows["split"] == "test"].sort_values("clip_id")
    order = fight_pattern(rows, clips or params["detect_test_clips"])
    if len(order) < 2:
        raise ValueError("the test split has fewer than two usable clips: nothing to assemble a test video from")
    folder = layout.deploy_dir / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    first = rows[rows["path"] == order[0][0]].iloc[0]
    size = (int(first["width"]), int(first["height"]))
    truth, cameras = {}, []
    block = CALM_RUN + VIOLENT_RUN
    blocks = max(1, len(order) // block)
    for k in range(4):  # camera k starts k blocks (or quarters, with many blocks) into the sequence
        shift = ((k * blocks) // 4 if blocks >= 4 else k % blocks) * block
        path = folder / f"camera-{k + 1}.mp4"
        segments = assemble_long_video(order[shift:] + order[:shift], path, size=size)
        cameras.append(str(path))
        if k == 0:
            truth[(path.name, "full")] = segments
        truth[("grid-2x2.mp4", f"r{k // 2 + 1}c{k % 2 + 1}")] = segments
    grid = folder / "grid-2x2.mp4"
    assemble_grid_video(cameras, 2, 2, grid, cell_size=size)
    duration = max(s["end_t"] for s in truth[("camera-1.mp4", "full")])
    return TestVideos(Path(cameras[0]), grid, truth, float(duration))


def run_detector(videos: TestVideos, params: Mapping, layout: RunLayout) -> dict[str, DetectionResult]:
    """The detector on the long video (one camera) and on the 2x2 grid (four cameras in one picture)."""
    recipe = run_recipe(params, layout)
    expected = expected_from_run(recipe.params, recipe.streams.streams)
    return {
        "long video": detect(
            [str(videos.long_video)], layout.export_dir, params, layout.deploy_dir / "long", expected=expected
        ),
        "2x2 grid": detect(
            [str(videos.grid_video)],
            layout.export_dir,
            params,
            layout.deploy_dir / "grid",
            grid=(2, 2),
            expected=expected,
        ),
    }


def detection_table(results: Mapping[str, DetectionResult]) -> pd.DataFrame:
    """Per run: cameras, the window used, windows scored, alerts, speed against real time, and the status of every
    camera."""
    rows = []
    for name, result in results.items():
        summary = result.summary
        cells = [c for s in summary["sources"] for c in s["cells"]]
        statuses = sorted({c["status"] for c in cells} | {s["status"] for s in summary["sources"]} - {"ok"})
        rows.append(
            {
                "video": name,
                "cameras": len(cells),
                "window": window_words(summary["settings"]["windows_used"]),
                "windows": summary["windows"],
                "alerts": summary["alerts"],
                "speed": f"{summary['realtime_factor'] or 0.0:.1f} times real time",
                "problems": ", ".join(statuses) or "none",
            }
        )
    return pd.DataFrame(rows).set_index("video")


def window_words(used: Sequence[Mapping]) -> str:
    """The windows a detection ran, in words: "1.88 s every 0.96 s (aligned)"."""
    return "; ".join(
        f"{w['window_s']:.2f} s every {w['stride_s']:.2f} s" + (" (aligned)" if w["aligned"] else "") for w in used
    )


def timelines(results: Mapping[str, DetectionResult], videos: TestVideos, layout: RunLayout) -> list:
    """The timeline of each detection run with its ground truth (saved as ``detector_timeline_*``)."""
    figures = []
    for name, result in results.items():
        fig = timeline_figure(
            result.window_scores,
            result.episodes,
            result.settings.policy,
            truth=videos.truth,
            title=f"Detector on the {name}",
        )
        save_figure(fig, layout, "detector_timeline_" + name.replace(" ", "_"))
        figures.append(fig)
    return figures


def confirmation_tradeoff(results: Mapping[str, DetectionResult], videos: TestVideos) -> pd.DataFrame:
    """Alerts with k-of-n confirmation against alerting on every window above the threshold, on every camera
    of both videos: detected violent segments, false alarms (per hour) and time from onset to alarm."""
    tables = []
    for name, result in results.items():
        policy = result.settings.policy
        policies = {f"confirmed ({policy.k} of {policy.n})": policy}
        if policy.k > 1:  # a lighter confirmation between the two, to show the trade-off's slope
            policies[f"lighter ({policy.k - 1} of {policy.n - 1})"] = dataclasses.replace(
                policy, k=policy.k - 1, n=max(policy.k - 1, policy.n - 1)
            )
        policies["every window above threshold"] = policy.unconfirmed()
        sources = set(result.windows["source"])
        truth = {key: segments for key, segments in videos.truth.items() if key[0] in sources}
        table = compare_policies(result.window_scores, policies, truth, videos.duration_s)
        tables.append(table.reset_index().assign(video=name, cameras=len(truth)))
    return pd.concat(tables).set_index(["video", "policy"])


def _policy_rows(tradeoff: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one policy of the trade-off table (one per video)."""
    rows = tradeoff.xs(name, level="policy")
    return rows if isinstance(rows, pd.DataFrame) else rows.to_frame().T


def tradeoff_verdict(tradeoff: pd.DataFrame) -> Markdown:
    """In words: what the configured k-of-n confirmation saved (false alarms) and cost (missed fights, delay)
    against alarming on every window, summed over both test videos; says plainly when it did not pay for itself
    or when there was nothing to compare."""
    names = list(dict.fromkeys(tradeoff.index.get_level_values("policy")))
    confirmed = _policy_rows(tradeoff, names[0]).sum(numeric_only=True)
    every = _policy_rows(tradeoff, names[-1]).sum(numeric_only=True)
    delay = _policy_rows(tradeoff, names[0])["median onset-to-alarm (s)"].median()
    delay_every = _policy_rows(tradeoff, names[-1])["median onset-to-alarm (s)"].median()
    saved = int(every["false alarms"] - confirmed["false alarms"])
    lost = int(every["detected"] - confirmed["detected"])
    words = (
        f"With **{names[0]}**, {int(confirmed['false alarms'])} false alarm(s) and {int(confirmed['detected'])} of "
        f"{int(confirmed['violent segments'])} fights alarmed; alarming on **every window above the threshold** "
        f"gives {int(every['false alarms'])} false alarm(s) and {int(every['detected'])} fights alarmed. "
    )
    if every["false alarms"] == 0 and lost <= 0:
        verdict = "On these videos there was no false alarm to save: the comparison cannot show a benefit yet."
    elif saved > 0 and lost <= 0:
        verdict = f"Confirmation pays for itself: {saved} fewer false alarm(s) and no fight missed."
    elif saved > 0:
        verdict = (
            f"Confirmation trades {saved} fewer false alarm(s) for {lost} more missed fight(s); "
            "choose k and n by which costs more on site."
        )
    else:
        verdict = "Confirmation does not pay for itself on these videos: it saves no false alarm."
    if np.isfinite(delay) and np.isfinite(delay_every):
        verdict += (
            f" Median time from the start of a fight to its alarm: {delay:.1f} s confirmed vs {delay_every:.1f} s."
        )
    for name in names[1:-1]:  # the lighter confirmation in between
        middle = _policy_rows(tradeoff, name)
        total = middle.sum(numeric_only=True)
        delay_middle = middle["median onset-to-alarm (s)"].median()
        verdict += (
            f" **{name.capitalize()}**: {int(total['false alarms'])} false alarm(s), {int(total['detected'])} of "
            f"{int(total['violent segments'])} fights"
            + (f", median delay {delay_middle:.1f} s." if np.isfinite(delay_middle) else ".")
        )
    return Markdown(words + verdict)


def publish_results(
    export: dict,
    parity: pd.DataFrame,
    stream: pd.DataFrame,
    results: Mapping[str, DetectionResult],
    videos: TestVideos,
    tradeoff: pd.DataFrame,
    layout: RunLayout,
) -> None:
    """Write ``artifacts/deploy/deploy.json`` (parity, stream check, detection, confirmation trade-off) and the
    deploy figures of the run's index page."""
    long_run = results["long video"]  # scored on alarm periods: every false alarm counts
    scored = score_alerts(long_run.periods, videos.truth[(videos.long_video.name, "full")], videos.duration_s)
    parity = parity.set_index("variant") if "variant" in parity.columns else parity
    write_json_atomic(
        layout.deploy_dir / "deploy.json",
        {
            "export": {k: export[k] for k in ("input", "window_s", "threshold", "variants")},
            "parity": parity.reset_index().to_dict("records"),
            "stream_vs_offline": stream.reset_index().to_dict("records"),
            "detection": {
                name: {k: r.summary[k] for k in ("windows", "alerts", "realtime_factor", "lag_s")}
                for name, r in results.items()
            },
            "long_video": {**scored, "duration_s": videos.duration_s},
            "confirmation": tradeoff.reset_index().to_dict("records"),
        },
    )
    figures = {
        "exported variants": ", ".join(export["variants"]),
        "float32 export max |Δp| vs Keras": {"value": float(parity["max |Δp|"]["float32"]), "format": "number"},
        "live vs offline max |Δp|": {"value": float(stream["|Δp|"].max()), "format": "number"},
        "violent stretches alarmed (long test video)": f"{scored['detected']} of {scored['violent_segments']}",
        "false alarms (long test video)": {"value": scored["false_alarms"], "format": "number"},
        "real-time factor, 2x2 grid": {
            "value": results["2x2 grid"].summary["realtime_factor"] or 0.0,
            "format": "number",
        },
    }
    if scored["median_onset_to_alarm_s"] is not None and np.isfinite(scored["median_onset_to_alarm_s"]):
        figures["median onset to alarm (s)"] = {"value": scored["median_onset_to_alarm_s"], "format": "number"}
    record_headline(layout.run_dir, "07_deploy", figures)
    run = export.get("run") or {}
    model = f"{run['model']} on {stream_set_words(run['stream_set'])}" if run.get("model") else ""
    summary = describe_deployment(scored, parity, results["2x2 grid"].summary, model)
    record_summary(layout.run_dir, "07_deploy", *summary)


def describe_deployment(scored: Mapping, parity: pd.DataFrame, grid: Mapping, model: str = "") -> tuple[str, str]:
    """(result, verdict) of notebook 07 in plain words: the model the detector runs (``model``, the one carried
    forward, in words) first, then fights alarmed and false alarms on the long test video, whether every export
    matches the trained model, and whether the 2x2 grid keeps up with live video."""
    delay = scored.get("median_onset_to_alarm_s")
    result = (
        (f"The detector runs the model carried forward, {model}. " if model else "")
        + f"On a test video made of test clips, the detector raised an alarm on {scored['detected']} of "
        f"{scored['violent_segments']} fights, with {scored['false_alarms']} false alarm(s)"
        + (
            f"; the median alarm came {delay:.1f} s after a fight began."
            if delay is not None and np.isfinite(delay)
            else "."
        )
    )
    factor = grid.get("realtime_factor") or 0.0
    result += (
        f" Four cameras at once (a 2x2 grid) were processed at {factor:.1f} times real time on this machine"
        f" ({'it keeps up with live video' if factor >= 1 else 'slower than live video'})."
    )
    off = (
        [str(v) for v, ok in zip(parity.index, parity["within tolerance"], strict=True) if not ok]
        if "within tolerance" in parity.columns
        else []
    )
    missed = scored["violent_segments"] - scored["detected"]
    if missed == 0 and scored["false_alarms"] == 0:
        verdict = "On these test videos the detector caught every fight without a false alarm."
    else:
        verdict = (
            f"On these test videos it missed {missed} fight(s) and raised {scored['false_alarms']} false "
            "alarm(s): tune the threshold or the k-of-n confirmation before relying on it."
        )
    verdict += (
        f" The {', '.join(off)} export(s) do not match the trained model: do not ship them."
        if off
        else " Every exported model (for phones and edge boxes) gives the trained model's answers."
    )
    return result, verdict
