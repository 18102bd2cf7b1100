"""Per-camera centering of pooled clip statistics by the camera's own normal footage.

A clip's pooled statistics (``adaptation.pooled_statistics``) carry its camera's scene as much as what happens
in it. Subtracting the mean statistics of the camera's normal footage (its "normal prototype") leaves what
differs from that camera's usual picture. With few normal clips the mean is noisy, so it is shrunk toward the
training cameras' normal mean as if that were ``shrinkage`` more clips:

    center(camera) = (sum of the camera's normal statistics + shrinkage * global_mean) / (n + shrinkage)

Training clips are centered by their own camera's OTHER normal clips (a normal clip never centers itself), a new
camera by its calibration footage; a camera with no normal footage gets the global mean. In the field this is
the only per-camera state the probe needs: the camera's normal mean and how many clips (windows) it came from
(``CameraCentering.camera_state``), set by calibration; the rule (``global_mean``, ``shrinkage``) is the same for
every camera and is saved beside the model (``save`` / ``load``: one ``.npz``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from nexara_lib.io import write_atomic

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CameraCentering:
    """The centering rule: the training cameras' normal mean and the shrinkage toward it."""

    global_mean: np.ndarray  # (F,) mean pooled statistics of the training clips' normal clips
    shrinkage: float  # pseudo-clips of the global mean in every camera's center (>= 0)

    def __post_init__(self):
        if not np.isfinite(self.shrinkage) or self.shrinkage < 0:
            raise ValueError(f"the centering shrinkage must be a number >= 0, got {self.shrinkage!r}")

    @classmethod
    def fit(cls, pooled, y, shrinkage: float) -> CameraCentering:
        """The rule from training clips: ``pooled`` (N, F) statistics and labels ``y`` (their normal mean)."""
        pooled, y = np.asarray(pooled, dtype=np.float64), np.asarray(y).astype(int)
        if not (y == 0).any():
            raise ValueError("camera centering needs normal (non-violent) training clips for its global mean")
        return cls(pooled[y == 0].mean(0), float(shrinkage))

    def center(self, normal_pooled) -> np.ndarray:
        """A camera's center from the pooled statistics of its normal footage, ``(n, F)`` (n may be 0)."""
        normal = np.asarray(normal_pooled, dtype=np.float64).reshape(-1, self.global_mean.size)
        if len(normal) + self.shrinkage == 0:
            return self.global_mean.copy()
        return (normal.sum(0) + self.shrinkage * self.global_mean) / (len(normal) + self.shrinkage)

    def camera_state(self, normal_pooled) -> dict:
        """What a detector keeps for one camera: its center (F,) and the normal clips it came from."""
        normal = np.asarray(normal_pooled, dtype=np.float64).reshape(-1, self.global_mean.size)
        return {"center": self.center(normal), "normal_clips": int(len(normal))}

    def apply(self, pooled, center) -> np.ndarray:
        """Clips of one camera, centered by its center (from ``center`` or ``camera_state``)."""
        return np.asarray(pooled, dtype=np.float64) - np.asarray(center, dtype=np.float64)

    def leave_one_out(self, pooled, y, cameras) -> np.ndarray:
        """Every clip centered by its camera's normal clips other than itself (labels of the other clips are the
        calibration footage's: known normal)."""
        pooled, y = np.asarray(pooled, dtype=np.float64), np.asarray(y).astype(int)
        cameras = np.asarray(cameras).astype(str)
        out = np.empty_like(pooled)
        for camera in np.unique(cameras):
            rows = np.flatnonzero(cameras == camera)
            normal = rows[y[rows] == 0]
            total, count = pooled[normal].sum(0), len(normal)
            lam_g = self.shrinkage * self.global_mean
            shared = (total + lam_g) / (count + self.shrinkage) if count + self.shrinkage > 0 else self.global_mean
            for i in rows:
                if y[i] == 0:
                    n = count - 1 + self.shrinkage
                    out[i] = pooled[i] - ((total - pooled[i] + lam_g) / n if n > 0 else self.global_mean)
                else:
                    out[i] = pooled[i] - shared
        return out

    def save(self, path: str | Path) -> Path:
        """Write the rule as one ``.npz`` (atomically)."""
        return write_atomic(
            path,
            lambda f: np.savez(f, version=STATE_VERSION, global_mean=self.global_mean, shrinkage=self.shrinkage),
            binary=True,
        )

    @classmethod
    def load(cls, path: str | Path) -> CameraCentering:
        with np.load(Path(path), allow_pickle=False) as data:
            if "version" not in data or int(data["version"]) != STATE_VERSION:
                raise ValueError(f"{path}: not a camera-centering file of version {STATE_VERSION}; refit it")
            return cls(np.asarray(data["global_mean"], dtype=np.float64), float(data["shrinkage"]))
