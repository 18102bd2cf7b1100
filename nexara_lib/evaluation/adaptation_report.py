"""What notebook 08 reports from the simulation's scored rows (``training.adaptation.simulate_adaptation``):
(a) the global against the per-camera threshold, (b) the learning curve over k reviewed clips per camera, each
with 95% CIs from a bootstrap over cameras, and paired differences on the same clips.

A design reads its rows at its own thresholds (``DESIGN_THRESHOLDS``): the plain probe alarms at the global
on-threshold, the adapted design at its per-camera threshold; both are scored for accuracy at the operating
threshold chosen on the training cameras (best balanced accuracy), the rule of the run's own threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nexara_lib.evaluation.adaptation import camera_bootstrap, metrics_of, significance_words

METRICS = ("accuracy", "auc", "recall", "false_alarm_rate")
DESIGN_THRESHOLDS = {"plain": "threshold_global", "adapted": "threshold_camera"}
DESIGN_WORDS = {
    "plain": "plain probe (reviewed clips join training; global threshold)",
    "adapted": "adapted (per-camera threshold from normal footage)",
}


def _metric_statistic(frame: pd.DataFrame, alarm_column: str):
    y, s = frame["y"].to_numpy(), frame["score"].to_numpy()
    acc_t, alarm_t = frame["threshold_accuracy"].to_numpy(), frame[alarm_column].to_numpy()
    return lambda idx: metrics_of(y[idx], s[idx], acc_t[idx], alarm_t[idx])


def _paired_statistic(a: pd.DataFrame, a_column: str, b: pd.DataFrame, b_column: str):
    """metrics(b) - metrics(a) on rows that are the same clips in the same order."""
    first, second = _metric_statistic(a, a_column), _metric_statistic(b, b_column)

    def statistic(idx):
        x, y = first(idx), second(idx)
        return {name: y[name] - x[name] for name in x}

    return statistic


def _with_ci(prefix: str, values: dict) -> dict:
    out = {}
    for name, (value, low, high) in values.items():
        out[f"{prefix}{name}"], out[f"{prefix}{name}_ci_low"], out[f"{prefix}{name}_ci_high"] = value, low, high
    return out


def threshold_comparison(rows: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """(a) On the clips of held-out cameras scored with no reviewed clip (k = 0, the plain probe): fight recall and
    false-alarm rate at the global on-threshold and at the per-camera threshold set on the camera's other normal
    clips (leave-one-out), and their paired difference; 95% CIs over cameras."""
    k0 = rows[(rows["k"] == 0) & (rows["design"] == "plain")].reset_index(drop=True)
    if k0.empty:
        raise ValueError("no rows scored with k = 0: adapt_k must hold 0")
    cameras = k0["camera"].to_numpy()
    out = []
    for name, column in (("global threshold", "threshold_global"), ("per-camera threshold", "threshold_camera")):
        values = camera_bootstrap(cameras, _metric_statistic(k0, column), n_bootstrap, seed)
        out.append({"threshold": name, **_with_ci("", {m: values[m] for m in ("recall", "false_alarm_rate")})})
    diff = camera_bootstrap(
        cameras, _paired_statistic(k0, "threshold_global", k0, "threshold_camera"), n_bootstrap, seed
    )
    out.append(
        {
            "threshold": "per-camera minus global",
            **_with_ci("", {m: diff[m] for m in ("recall", "false_alarm_rate")}),
            "significance of the recall difference": significance_words(*diff["recall"][1:]),
        }
    )
    table = pd.DataFrame(out).set_index("threshold")
    table.attrs.update(
        fights=int((k0["y"] == 1).sum()),
        normal_clips=int((k0["y"] == 0).sum()),
        cameras=int(k0["camera"].nunique()),
        median_calibration_clips=float(k0.loc[k0["y"] == 0, "calibration_clips"].median()),
    )
    return table


def per_camera_thresholds(rows: pd.DataFrame) -> pd.DataFrame:
    """Per held-out camera (k = 0, plain probe, over fold seeds): its fights and normal clips, the share caught and
    the share of false alarms at the global and at the per-camera threshold."""
    k0 = rows[(rows["k"] == 0) & (rows["design"] == "plain")]
    out = []
    for camera, part in k0.groupby("camera", sort=True):
        fights, normal = part[part["y"] == 1], part[part["y"] == 0]
        row = {
            "camera": camera,
            "fights": int(fights["clip_id"].nunique()),
            "normal clips": int(normal["clip_id"].nunique()),
        }
        for label, column in (("global", "threshold_global"), ("per camera", "threshold_camera")):
            row[f"recall {label}"] = float((fights["score"] >= fights[column]).mean()) if len(fights) else np.nan
            row[f"false alarm rate {label}"] = (
                float((normal["score"] >= normal[column]).mean()) if len(normal) else np.nan
            )
        out.append(row)
    return pd.DataFrame(out).set_index("camera")


def learning_curve(rows: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """(b) Per design and k: accuracy, AUC, fight recall and false-alarm rate on the clips scored (pooled over fold
    seeds and draws; 95% CIs over cameras), their spread over fold seeds, the clips reviewed per camera, and the
    paired gain over k = 0 on the same clips."""
    out = []
    for (design_key, k_key), part in rows.groupby(["design", "k"], sort=True):
        design, k = str(design_key), int(k_key)  # type: ignore[call-overload]
        part = part.reset_index(drop=True)
        column = DESIGN_THRESHOLDS[design]
        values = camera_bootstrap(part["camera"].to_numpy(), _metric_statistic(part, column), n_bootstrap, seed)
        per_seed = [
            _metric_statistic(p.reset_index(drop=True), column)(np.arange(len(p))) for _, p in part.groupby("fold_seed")
        ]
        spread = {f"{m}_seed_std": float(np.nanstd([v[m] for v in per_seed])) for m in METRICS}
        reviewed = part.groupby(["fold_seed", "draw", "camera"])["reviewed"].first()
        row = {
            "design": design,
            "k": k,
            "reviewed clips per camera": float(reviewed.mean()),
            "scored clips": int(len(part)),
            **_with_ci("", values),
            **spread,
        }
        if k > 0:
            row.update(_with_ci("gain_", _gain_over_k0(rows, part, design, column, n_bootstrap, seed)))
        out.append(row)
    return pd.DataFrame(out)


def _gain_over_k0(rows, part: pd.DataFrame, design: str, column: str, n_bootstrap: int, seed: int) -> dict:
    keys = ["fold_seed", "clip_id"]
    k0 = rows[(rows["k"] == 0) & (rows["design"] == design)][[*keys, "y", "score", "threshold_accuracy", column]]
    both = part.merge(k0, on=keys, suffixes=("", "_k0"))
    before = both[["y_k0", "score_k0", "threshold_accuracy_k0", f"{column}_k0"]]
    before.columns = ["y", "score", "threshold_accuracy", column]
    values = camera_bootstrap(
        both["camera"].to_numpy(), _paired_statistic(before, column, both, column), n_bootstrap, seed
    )
    return {m: values[m] for m in ("accuracy", "recall", "auc")}


def design_difference(rows: pd.DataFrame, k: int, n_bootstrap: int, seed: int) -> dict:
    """Adapted minus plain at ``k`` on the same clips: each metric's difference with its 95% CI over cameras."""
    keys = ["fold_seed", "draw", "clip_id"]
    plain = rows[(rows["k"] == k) & (rows["design"] == "plain")].sort_values(keys).reset_index(drop=True)
    adapted = rows[(rows["k"] == k) & (rows["design"] == "adapted")].sort_values(keys).reset_index(drop=True)
    if len(plain) != len(adapted) or not (plain[keys].to_numpy() == adapted[keys].to_numpy()).all():
        raise ValueError(f"the two designs did not score the same clips at k = {k}")
    statistic = _paired_statistic(plain, DESIGN_THRESHOLDS["plain"], adapted, DESIGN_THRESHOLDS["adapted"])
    return camera_bootstrap(plain["camera"].to_numpy(), statistic, n_bootstrap, seed)


def reviewed_needed(curve: pd.DataFrame, design: str = "adapted", tolerance: float = 0.02) -> dict:
    """The fewest reviewed clips per camera whose fight recall comes within ``tolerance`` of the best reached,
    with its recall, false-alarm rate and whether its gain over none is significant."""
    part = curve[curve["design"] == design].sort_values("k")
    best = part["recall"].max()
    row = part[part["recall"] >= best - tolerance].iloc[0]
    significant = (
        row["k"] > 0 and significance_words(row["gain_recall_ci_low"], row["gain_recall_ci_high"]) == "significant"
    )
    return {
        "k": int(row["k"]),
        "recall": float(row["recall"]),
        "false_alarm_rate": float(row["false_alarm_rate"]),
        "accuracy": float(row["accuracy"]),
        "gain_significant": bool(significant),
    }


def summary_numbers(curve: pd.DataFrame, ks: Sequence[int] = (0, 2)) -> dict:
    """Accuracy, AUC and recall with CIs of each design at the given k (for headlines)."""
    out = {}
    for _, row in curve[curve["k"].isin(ks)].iterrows():
        for metric in METRICS:
            out[(row["design"], int(row["k"]), metric)] = (
                row[metric],
                row[f"{metric}_ci_low"],
                row[f"{metric}_ci_high"],
            )
    return out
