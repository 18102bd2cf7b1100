"""Weight-free motion stream: dense optical-flow statistics per frame pair.

Each sampled time step contributes a pair (the sampled frame, the frame right
after it). Both frames are turned to grayscale at a fixed working size, dense
Farneback flow is computed between them, and the flow field is summarised in a
fixed-length vector: how much moves, how fast, in which directions, where in
the frame, and how *coherently* (a person running moves as one block; limbs
striking and bodies recoiling give opposing, locally incoherent flow).

Flow is expressed in percent of the working width, so the numbers mean the
same thing whatever the input resolution and stay in a range (roughly 0-30)
that a standardising model handles without surprises.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SIZE = 112  # frames are resized to WORK_SIZE x WORK_SIZE before flow: fixed cost, fixed grid
MOVING_THRESHOLDS = (1.0, 3.0)  # percent of width: "moves" (above camera-noise flow) and "moves fast"
MAGNITUDE_BIN_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)  # percent of width
DIRECTION_BINS = 8  # bin k is centred on k * 45 degrees; 0 = rightward, 2 = downward (image y grows down)
GRID = 3  # GRID x GRID cells of mean magnitude: where in the frame the motion is
COHERENCE_BOX = 9  # px at working size: neighbourhood for the local flow-incoherence measure
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=11, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)

FEATURE_NAMES = tuple(
    ["mag_mean", "mag_std", "mag_p50", "mag_p90", "mag_p99", "mag_max"]
    + [f"mag_hist_{i}" for i in range(len(MAGNITUDE_BIN_EDGES) - 1)]
    + [f"dir_hist_{i}" for i in range(DIRECTION_BINS)]
    + ["dx_mean", "dx_std", "dy_mean", "dy_std"]
    + [f"moving_frac_{t:g}" for t in MOVING_THRESHOLDS]
    + [f"grid_{r}{c}" for r in range(GRID) for c in range(GRID)]
    + [
        "grid_max_share",
        "moving_spread_x",
        "moving_spread_y",
        "abs_div_mean",
        "abs_curl_mean",
        "abs_div_p95",
        "abs_curl_p95",
        "div_curl_ratio",
        "local_incoherence_mean",
        "local_incoherence_ratio",
        "global_incoherence",
        "opposing_share",
    ]
)
FLOW_FEATURE_DIM = len(FEATURE_NAMES)  # length of the vector flow_features returns per pair


def _to_gray(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 frame -> WORK_SIZE x WORK_SIZE grayscale uint8."""
    # Views such as frames[..., ::-1] (BGR -> RGB) have negative strides OpenCV rejects.
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)


def dense_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    """Farneback optical flow from frame_a to frame_b at the working size.

    Args:
        frame_a, frame_b: (H, W, 3) uint8 RGB frames of the same shape.

    Returns:
        (WORK_SIZE, WORK_SIZE, 2) float32 flow in working-size pixels (dx, dy).
    """
    # OpenCV's stub types ``flow`` as a required array; None (allocate the output) is what its docs prescribe.
    return cv2.calcOpticalFlowFarneback(_to_gray(frame_a), _to_gray(frame_b), None, **FARNEBACK)  # type: ignore[call-overload]


def _quantiles(values: np.ndarray, qs: tuple) -> np.ndarray:
    """Order statistics via one partial sort (np.percentile sorts fully: 4x slower here)."""
    flat = values.ravel()
    ranks = [min(flat.size - 1, int(q * (flat.size - 1))) for q in qs]
    return np.partition(flat, ranks)[ranks]


def summarise_flow(flow: np.ndarray) -> np.ndarray:
    """Turn one dense flow field into the fixed-length feature vector.

    Args:
        flow: (h, w, 2) float32 flow in pixels of an h x w image.

    Returns:
        (FLOW_FEATURE_DIM,) float32 vector, ordered as FEATURE_NAMES.
    """
    h, w = flow.shape[:2]
    scale = 100.0 / w  # pixels -> percent of the working width
    dx = flow[..., 0] * scale
    dy = flow[..., 1] * scale
    mag = np.sqrt(dx * dx + dy * dy)

    p50, p90, p99 = _quantiles(mag, (0.5, 0.9, 0.99))
    mag_stats = [mag.mean(), mag.std(), p50, p90, p99, mag.max()]
    mag_hist = np.histogram(mag, bins=MAGNITUDE_BIN_EDGES)[0] / mag.size
    moving_frac = [(mag > t).mean() for t in MOVING_THRESHOLDS]

    # Only pixels moving faster than camera noise can make (about 1 px here)
    # describe direction and coherence; noise flow points everywhere at once.
    moving = mag > MOVING_THRESHOLDS[0]
    mdx, mdy, mmag = dx[moving], dy[moving], mag[moving]
    dir_hist = np.zeros(DIRECTION_BINS)
    spread_x = spread_y = global_incoherence = opposing = 0.0
    if mmag.size:
        angle = np.arctan2(mdy, mdx)
        bins = np.round(angle / (2 * np.pi / DIRECTION_BINS)).astype(np.int64) % DIRECTION_BINS
        dir_hist = np.bincount(bins, weights=mmag, minlength=DIRECTION_BINS) / mmag.sum()
        # Where the motion is: one small blob (a scuffle) or spread over the frame (runners).
        ys, xs = np.nonzero(moving)
        spread_x, spread_y = xs.std() / w, ys.std() / h
        # 0 for one rigid shift; grows when motions in the same frame cancel out.
        rx, ry = mdx.mean(), mdy.mean()
        resultant = np.hypot(rx, ry)
        global_incoherence = 1.0 - resultant / mmag.mean()
        if resultant > 0:
            # Share of moving magnitude that goes against the overall direction.
            along = (mdx * rx + mdy * ry) / resultant
            opposing = mmag[along < 0].sum() / mmag.sum()

    grid = cv2.resize(mag, (GRID, GRID), interpolation=cv2.INTER_AREA).ravel()
    grid_max_share = grid.max() / (grid.sum() + 1e-3)

    # Divergence and curl: a limb striking into a body and the body recoiling
    # give converging and shearing flow; a runner is close to a rigid shift.
    du_dy, du_dx = np.gradient(dx)
    dv_dy, dv_dx = np.gradient(dy)
    abs_div = np.abs(du_dx + dv_dy)
    abs_curl = np.abs(dv_dx - du_dy)
    div_p95 = _quantiles(abs_div, (0.95,))[0]
    curl_p95 = _quantiles(abs_curl, (0.95,))[0]
    div_curl_ratio = (abs_div.mean() + abs_curl.mean()) / (mag.mean() + 0.1)

    # Local incoherence: how far each vector is from its neighbourhood's mean.
    # Smooth motion (running, swinging arms) is locally coherent; two bodies
    # jerking against each other are not.
    box = (COHERENCE_BOX, COHERENCE_BOX)
    ex = dx - cv2.blur(dx, box)
    ey = dy - cv2.blur(dy, box)
    residual = np.sqrt(ex * ex + ey * ey)
    local_ratio = residual[moving].mean() / (mmag.mean() + 0.1) if mmag.size else 0.0

    return np.array(
        [
            *mag_stats,
            *mag_hist,
            *dir_hist,
            dx.mean(),
            dx.std(),
            dy.mean(),
            dy.std(),
            *moving_frac,
            *grid,
            grid_max_share,
            spread_x,
            spread_y,
            abs_div.mean(),
            abs_curl.mean(),
            div_p95,
            curl_p95,
            div_curl_ratio,
            residual.mean(),
            local_ratio,
            global_incoherence,
            opposing,
        ],
        dtype=np.float32,
    )


def flow_features(frame_pairs: np.ndarray) -> np.ndarray:
    """Encode T frame pairs as optical-flow statistics (the motion stream).

    Args:
        frame_pairs: (T, 2, H, W, 3) uint8 RGB; for each sampled time step the
            sampled frame and the frame right after it in the video.

    Returns:
        (T, FLOW_FEATURE_DIM) float32 features, ordered as FEATURE_NAMES.
    """
    if not isinstance(frame_pairs, np.ndarray):
        raise ValueError(
            f"flow_features: frame_pairs must be a numpy array, got {type(frame_pairs).__name__}; "
            "stack the pairs with np.stack"
        )
    if frame_pairs.dtype != np.uint8:
        raise ValueError(
            f"flow_features: frame_pairs must be uint8 RGB, got dtype {frame_pairs.dtype}; "
            "convert decoded frames with .astype(np.uint8) (values 0-255), not floats in [0, 1]"
        )
    if frame_pairs.ndim != 5 or frame_pairs.shape[1] != 2 or frame_pairs.shape[4] != 3:
        raise ValueError(
            f"flow_features: frame_pairs must have shape (T, 2, H, W, 3), got {frame_pairs.shape}; "
            "axis 1 holds (frame, next frame), the last axis RGB channels"
        )
    t, _, h, w, _ = frame_pairs.shape
    if t == 0 or h < 8 or w < 8:
        raise ValueError(
            f"flow_features: need at least one pair of frames of at least 8x8 pixels, got shape {frame_pairs.shape}"
        )
    out = np.empty((t, FLOW_FEATURE_DIM), dtype=np.float32)
    for i in range(t):
        out[i] = summarise_flow(dense_flow(frame_pairs[i, 0], frame_pairs[i, 1]))
    return out
