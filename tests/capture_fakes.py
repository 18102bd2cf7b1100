"""Stand-ins for cv2.VideoCapture in tests: scripted captures, a fake clock, an opener handing them out."""

import cv2
import numpy as np

FAIL = "fail"  # a read that returns (False, None)


def marked(i: int, size=(48, 64)) -> np.ndarray:
    """A BGR frame whose pixels all hold i (so its identity survives conversion)."""
    return np.full((*size, 3), i, np.uint8)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, dt):
        self.t += dt


class FakeCapture:
    """A cv2.VideoCapture stand-in playing a script: arrays (or None) read ok, (frame, pos_ms) pairs, FAIL.

    ``forever`` repeats marked frames after the script; each read advances ``clock`` by ``step``.
    """

    def __init__(self, script=(), fps=25.0, opened=True, clock=None, step=0.04, forever=False):
        self.script, self.fps, self.opened = list(script), fps, opened
        self.clock, self.step, self.forever = clock, step, forever
        self.reads, self.pos_ms, self.released = 0, 0.0, False

    def isOpened(self):
        return self.opened and not self.released

    def read(self):
        if self.clock is not None:
            self.clock.advance(self.step)
        if not self.script:
            if not self.forever:
                return False, None
            self.script.append(marked(self.reads % 256))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        if isinstance(item, str) and item == FAIL:
            return False, None
        frame, self.pos_ms = item if isinstance(item, tuple) else (item, self.reads * 40.0)
        self.reads += 1
        return True, frame

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_POS_MSEC: self.pos_ms}.get(prop, 0.0)

    def release(self):
        self.released = True


def opener_of(*caps):
    """An opener handing out ``caps`` in turn (None: a capture that does not open), then failing opens."""
    queue, seen = list(caps), []

    def opener(uri):
        seen.append(uri)
        cap = queue.pop(0) if queue else None
        return cap if cap is not None else FakeCapture(opened=False)

    opener.seen = seen
    return opener
