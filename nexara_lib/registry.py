"""One small registry type behind every ``create_*`` entry point (models, augmentations, TTA, backbones)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry(dict):
    """``name -> entry``, filled by decorators; a lookup of an unknown name lists the known ones."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind  # what the entries are, for error messages ("sequence model", "TTA transform", ...)

    def add(self, name: str, entry: Any) -> Any:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
        self[name] = entry
        return entry

    def register(self, name: str, make_entry: Callable[[Callable], Any] | None = None) -> Callable:
        """Decorator: store the function (or ``make_entry(function)``) under ``name``; returns it unchanged."""

        def decorator(fn):
            self.add(name, make_entry(fn) if make_entry else fn)
            return fn

        return decorator

    def lookup(self, name: str) -> Any:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {self.names()}")
        return self[name]

    def names(self) -> list[str]:
        return sorted(self)
