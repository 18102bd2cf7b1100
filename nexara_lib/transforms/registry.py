"""The one transform registry: the ``Transform`` entry, registration, lookup and name checks.

Every named transform, whether it augments training data or makes a test-time view, is one
``Transform`` with one entry-point shape, ``apply(x, params, **inputs) -> new array``:

- ``acts_on`` says what ``x`` is: "pixels" (decoded uint8 RGB frames ``(F, H, W, 3)``),
  "sampling" (a clip's sampled frame indices ``(T,)``, before decoding) or "features"
  (feature sequences ``(N, T, D)``). The first two are the "frame" level (before the
  backbone), the last the "feature" level (after it, on cached features).
- ``params`` is a dict of plain values. ``draw(rng)`` gives the parameters of one augmentation
  draw (the entry serves "augment"); ``tta_params`` are the fixed parameters of the
  test-time view (the entry serves "tta"). An entry may serve both, under one name.
- ``needs`` names the other inputs the transform reads, from ``INPUTS``: ``rng`` (ops random per
  clip), ``labels`` (within-class mixing), ``span`` (frames the indices may address),
  ``feature_std`` (per-dimension spread of the training features), ``size`` (the backbone's square
  input side) and ``pairs`` (the backbone reads (frame, next frame) pairs).
- Stream views (``acts_on`` "regions", use "stream"; ``frame_views``) are the one exception to "same
  shape in, same shape out": they take a clip's frames at native resolution (``(T, H, W, 3)``, or
  ``(T, 2, H, W, 3)`` with each frame's next frame) and give ``R`` regions of every frame at the
  backbone's size, ``(T * R, S, S, 3)`` (pairs: ``(T * R, 2, S, S, 3)``), plus a dict for the clip's
  read record. Each is extracted as a feature stream of its own, its parameters in the cache key
  (``StreamView``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import numpy as np

from nexara_lib.registry import Registry

ACTS_ON = {"pixels": "frame", "sampling": "frame", "regions": "frame", "features": "feature"}  # x -> its level
LEVELS = ("frame", "feature")
USES = ("augment", "tta", "stream")
INPUTS = ("rng", "labels", "span", "feature_std", "size", "pairs")
_USE_WORDS = {"augment": "augmentation", "tta": "test-time view", "stream": "stream view"}


@dataclasses.dataclass(frozen=True)
class StreamView:
    """What makes a "regions" transform a feature stream of its own (use "stream").

    Attributes:
        defaults: its parameters when none are given (plain JSON values).
        check: ``params -> params``: the defaults completed by ``params``, validated (ValueError
            naming the parameter, the value and what is allowed).
        key: ``checked params -> cache-key suffix`` (e.g. "motion_crop-f0.50"): every parameter that
            changes the cached numbers, and only those.
        regions: ``checked params -> R``, frames given per sampled frame (cached as ``(T, R * D)``).
        reads_next: needs every sampled frame's next decoded frame (then frames come as pairs).
        pair_backbones: it can feed a backbone that reads (frame, next frame) pairs (``flow``); False for a
            view whose output is no longer a frame of the clip (a difference image).
    """

    defaults: Mapping
    check: Callable[[Mapping], dict]
    key: Callable[[Mapping], str]
    regions: Callable[[Mapping], int]
    reads_next: bool = False
    pair_backbones: bool = True


@dataclasses.dataclass(frozen=True)
class Transform:
    """One registered transform; ``apply`` runs it, ``level`` and ``uses`` say what it is for."""

    name: str
    acts_on: str  # "pixels", "sampling" or "features" (see ACTS_ON)
    description: str
    fn: Callable[..., np.ndarray]  # fn(x, params, **needed inputs) -> a new array of x's shape
    needs: tuple[str, ...] = ()  # inputs fn takes besides x and params, from INPUTS
    draw: Callable[[np.random.Generator], dict] | None = None  # rng -> params of one augmentation draw
    tta_params: Mapping | None = None  # the fixed params of the test-time view
    stream: StreamView | None = None  # a stream view's parameters, key and regions (acts_on "regions")

    @property
    def level(self) -> str:
        """Where it acts: "frame" (before the backbone: pixels or sampling) or "feature" (after it)."""
        return ACTS_ON[self.acts_on]

    @property
    def uses(self) -> tuple[str, ...]:
        """Which of "augment" (it has ``draw``), "tta" (it has ``tta_params``) and "stream" (it has
        ``stream``) it serves."""
        has = (self.draw is not None, self.tta_params is not None, self.stream is not None)
        return tuple(use for use, served in zip(USES, has, strict=True) if served)

    def view_params(self, seed: int | None = None) -> dict:
        """The test-time view's parameters; a seeded view (a "seed" among them) takes ``seed`` when given."""
        if self.tta_params is None:
            raise ValueError(
                f"transform {self.name!r} is not a test-time view (it serves {list(self.uses)}); "
                f"TTA views: {available_transforms(use='tta')}"
            )
        params = dict(self.tta_params)
        if seed is not None and "seed" in params:
            params["seed"] = int(seed)
        return params

    def apply(self, x, params: Mapping, **inputs) -> np.ndarray:
        """Run the transform on ``x`` with ``params``; ``inputs`` it does not need are ignored.

        Args:
            x: frames, frame indices or features, as ``acts_on`` says.
            params: from ``draw(rng)``, ``view_params()`` or written by hand.
            **inputs: any of ``INPUTS``; those in ``needs`` are required.

        Returns:
            a new array of the same shape (the input is never modified); a stream view ("regions")
            returns (frames ``(T * R, S, S, 3)`` or pairs ``(T * R, 2, S, S, 3)``, record dict).
        """
        unknown = sorted(set(inputs) - set(INPUTS))
        if unknown:
            raise ValueError(f"transform {self.name!r}: unknown inputs {unknown}; inputs are {list(INPUTS)}")
        missing = [name for name in self.needs if inputs.get(name) is None]
        if missing:
            raise ValueError(f"transform {self.name!r} needs {missing} (it reads {list(self.needs)})")
        x = _CHECKS[self.acts_on](self.name, x, inputs.get("span"))
        return self.fn(x, dict(params), **{name: inputs[name] for name in self.needs})


def _check_regions(name: str, frames, span) -> np.ndarray:
    frames = np.asarray(frames)
    single = frames.ndim == 4 and frames.shape[-1] == 3
    pairs = frames.ndim == 5 and frames.shape[1] == 2 and frames.shape[-1] == 3
    if not (single or pairs) or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(
            f"transform {name!r} acts on regions of native-resolution frames: expects uint8 RGB "
            f"frames (T, H, W, 3) or (frame, next frame) pairs (T, 2, H, W, 3), got shape "
            f"{frames.shape} dtype {frames.dtype}; decode with read_sampled_frames(size=None)"
        )
    return frames


def _check_pixels(name: str, frames, span) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"transform {name!r} acts on pixels: expects uint8 RGB frames (T, H, W, 3), got shape "
            f"{frames.shape} dtype {frames.dtype}"
        )
    return frames


def check_indices(name: str, indices, span) -> np.ndarray:
    """Sampled frame indices as int64 (a copy), checked to lie in ``[0, span - 1]``; ``name`` says who asks."""
    if isinstance(span, bool) or not isinstance(span, (int, np.integer)) or span < 1:
        raise ValueError(f"{name}: span must be a positive integer (n_frames, or n_frames - 1 for pairs), got {span!r}")
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"{name}: indices must be a non-empty 1-D integer array (from sampled_indices), "
            f"got shape {indices.shape} dtype {indices.dtype}"
        )
    if indices.min() < 0 or indices.max() > span - 1:
        raise ValueError(
            f"{name}: indices must lie in [0, span - 1] = [0, {span - 1}], got "
            f"[{indices.min()}, {indices.max()}]; pass the span the indices were sampled over"
        )
    return indices.astype(np.int64)


def _check_features(name: str, features, span) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 3 or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(
            f"transform {name!r} acts on features: expects float features (N, T, D), got shape "
            f"{features.shape} dtype {features.dtype}"
        )
    return features


_CHECKS = {"pixels": _check_pixels, "sampling": check_indices, "regions": _check_regions, "features": _check_features}

TRANSFORMS = Registry("transform")


def register_transform(
    name: str,
    acts_on: str,
    description: str,
    *,
    needs: Sequence[str] = (),
    draw: Callable[[np.random.Generator], dict] | None = None,
    tta_params: Mapping | None = None,
    stream: StreamView | None = None,
) -> Callable:
    """Decorator that adds ``fn(x, params, **needed inputs)`` to ``TRANSFORMS`` under ``name``.

    Args:
        name: the name used in parameters and, for frame-level views, in feature-cache keys.
        acts_on: "pixels", "sampling", "regions" or "features".
        description: one line saying what it does and why.
        needs: the inputs ``fn`` takes besides x and params, from ``INPUTS``.
        draw: ``rng -> params`` of one augmentation draw (plain JSON values); given = serves "augment".
        tta_params: the fixed parameters of the test-time view; given = serves "tta".
        stream: a stream view's parameters, key and regions; given = serves "stream" (acts_on
            "regions" only, and only as a stream view).

    Returns:
        the decorator; it returns ``fn`` unchanged.
    """
    if acts_on not in ACTS_ON:
        raise ValueError(f"transform {name!r}: acts_on must be one of {list(ACTS_ON)}, got {acts_on!r}")
    if not set(needs) <= set(INPUTS):
        raise ValueError(f"transform {name!r}: needs must be among {list(INPUTS)}, got {list(needs)}")
    if (stream is not None) != (acts_on == "regions") or (stream is not None and (draw or tta_params is not None)):
        raise ValueError(
            f"transform {name!r}: a stream view (stream=...) acts on regions and serves nothing else, "
            f"and a regions transform is a stream view; got acts_on {acts_on!r}, "
            f"stream {'given' if stream is not None else 'missing'}"
        )
    if draw is None and tta_params is None and stream is None:
        raise ValueError(
            f"transform {name!r}: give draw (augmentation), tta_params (test-time view) or both, "
            "or stream (a stream view)"
        )
    fixed = None if tta_params is None else MappingProxyType(dict(tta_params))
    return TRANSFORMS.register(
        name, lambda fn: Transform(name, acts_on, description, fn, tuple(needs), draw, fixed, stream)
    )


def fixed_draw(**settings) -> Callable[[np.random.Generator], dict]:
    """A ``draw`` that returns ``settings`` and takes nothing from the rng, for ops random per clip
    (their randomness comes from the ``rng`` input of ``apply``)."""

    def draw(rng: np.random.Generator) -> dict:
        return dict(settings)

    return draw


def get_transform(name: str) -> Transform:
    """The registered transform called ``name``; unknown names raise ValueError listing the known ones."""
    return TRANSFORMS.lookup(name)


def available_transforms(level: str | None = None, use: str | None = None) -> list[str]:
    """Names of the registered transforms, sorted; only those of ``level`` and serving ``use`` when given."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS} or None, got {level!r}")
    if use is not None and use not in USES:
        raise ValueError(f"use must be one of {USES} or None, got {use!r}")
    return [
        name
        for name in TRANSFORMS.names()
        if (level is None or TRANSFORMS[name].level == level) and (use is None or use in TRANSFORMS[name].uses)
    ]


def check_transform_names(
    names: Sequence[str], *, level: str | None = None, use: str | None = None, what: str = "transforms"
) -> list[str]:
    """Validate a list of transform names for one purpose.

    Args:
        names: a non-empty list of names (repeats allowed here).
        level, use: what the names must be (see ``available_transforms``).
        what: how the list is called in messages, e.g. "augmentation ops".

    Returns:
        the names as a list, in the given order.

    Raises:
        ValueError: for a non-list or empty list, unknown names, or names of another level or use;
            the message lists the names that fit.
    """
    fitting = available_transforms(level, use)
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise ValueError(f"{what} must be a non-empty list of names from {fitting}, got {names!r}")
    unknown = [name for name in names if not isinstance(name, str) or name not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown {unknown}; available {what}: {fitting}")
    misfits = [name for name in dict.fromkeys(names) if name not in fitting]
    if misfits:
        words = (level and f"{level}-level", _USE_WORDS.get(use) if use is not None else None)
        kind = " ".join(word for word in words if word)
        found = "; ".join(
            f"{name!r} acts on {TRANSFORMS[name].acts_on} and serves {'/'.join(TRANSFORMS[name].uses)}"
            for name in misfits
        )
        raise ValueError(f"{what} must be {kind} transforms, but {found}; available {what}: {fitting}")
    return list(names)
