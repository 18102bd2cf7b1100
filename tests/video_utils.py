"""Reference decoding for tests: every frame of a clip by a plain sequential cap.read() loop."""

import cv2
import numpy as np


def decode_all(path, rgb: bool = True) -> np.ndarray:
    """All frames of a video as (N, H, W, 3) uint8 (RGB, or BGR as OpenCV stores them)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame)
    cap.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
