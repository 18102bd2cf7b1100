"""Typed parameter values checked against the schema (``nexara_lib.schema``: every key's type, default and
meaning, declared once).

Parameters are flat keys (papermill merges top-level names only). ``SCHEMA`` is the one
owner of every default: YAML files, notebooks and model factories never repeat one.
``coerce`` checks one value against its entry (type, choices, and the ``Range`` of a
number); an unknown key, a wrong type, a value out of range or a missing path is a
``ParamError`` naming the key, where it came from and what is allowed. ``stage_config``
gives a stage a frozen, typed view of just its keys.

Layering files and overrides, and the checks that need the registries, live in
``nexara_lib.run.params`` (it sits above the stages; this module sits below them).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from nexara_lib.io import write_text_atomic

# The schema's names, re-exported: callers read SCHEMA, Param, Range and ParamError from here.
from nexara_lib.schema import COUNT, OPEN_UNIT, POSITIVE, RATE, SCHEMA, UNIT, Param, ParamError, Range  # noqa: F401

MEMBER_KEYS = {"model", "seed", "backbone", "backbone_weights"}


class Params(Mapping):
    """Resolved, validated, read-only parameters; keys are also attributes."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]):
        self._values = dict(values)
        self._sources = dict(sources)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, key):
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(f"no parameter named {key!r}") from None

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from (a file, '--set' or 'default')."""
        return self._sources.get(key, "default")

    def to_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self):
        return f"Params({self._values!r})"


def param_fail(key, where, message):
    raise ParamError(f"parameter {key!r} (from {where}): {message}")


def _as_path(value, key, where, base: Path | None, must_exist: bool) -> str:
    if not isinstance(value, (str, Path)) or str(value) == "":
        param_fail(key, where, f"expected a path string, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(str(path.resolve()))
    if must_exist and not path.exists():
        param_fail(key, where, f"path {str(path)!r} does not exist; fix the path or create it")
    return str(path)


def coerce(key: str, value: Any, where: str, base: Path | None = None) -> Any:
    """Check ``value`` against the schema entry of ``key``; return the typed value."""
    if key not in SCHEMA:
        close = difflib.get_close_matches(key, list(SCHEMA), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see docs/parameters.md (nexara params)"
        param_fail(key, where, f"unknown parameter{hint}")
    spec = SCHEMA[key]
    kind = spec.kind
    if value is None:
        if spec.default is None:
            return None
        param_fail(key, where, f"must not be null (expected {kind})")
    if kind == "bool":
        if not isinstance(value, bool):
            param_fail(key, where, f"expected true/false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            param_fail(key, where, f"expected an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            param_fail(key, where, f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "str":
        if isinstance(value, bool) and {"on", "off"} & set(spec.choices):
            value = "on" if value else "off"  # YAML 1.1 reads an unquoted on/off (yes/no) as true/false
        if not isinstance(value, str):
            param_fail(key, where, f"expected a string, got {value!r}")
    elif kind == "str_or_float":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            param_fail(key, where, f"expected 'auto' or a number, got {value!r}")
        if isinstance(value, str) and value != "auto":
            param_fail(key, where, f"expected 'auto' or a number, got {value!r}")
        value = value if isinstance(value, str) else float(value)
    elif kind == "path":
        value = _as_path(value, key, where, base, spec.must_exist)
    elif kind == "path_list":
        if not isinstance(value, list):
            param_fail(key, where, f"expected a list of paths (may be empty), got {value!r}")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in value]
    elif kind == "paths":
        items = value if isinstance(value, list) else [value]
        if not items:
            param_fail(key, where, "expected a path or a non-empty list of paths")
        value = [_as_path(v, key, where, base, spec.must_exist) for v in items]
    elif kind in ("str_list", "float_list", "int_list"):
        if not isinstance(value, list):
            param_fail(key, where, f"expected a list, got {value!r}")
        item_types: dict[str, type | tuple[type, ...]] = {"str_list": str, "float_list": (int, float), "int_list": int}
        item_type = item_types[kind]
        for item in value:
            if isinstance(item, bool) or not isinstance(item, item_type):
                param_fail(key, where, f"every item must be {kind.split('_')[0]}, got {item!r}")
        if kind == "float_list":
            value = [float(v) for v in value]
    elif kind == "member_list":
        if not isinstance(value, list) or not value:
            param_fail(key, where, "expected a non-empty list of {model, seed, backbone} mappings")
        members = []
        for item in value:
            if not isinstance(item, dict) or "model" not in item:
                param_fail(key, where, f"each member needs at least a 'model', got {item!r}")
            unknown = set(item) - MEMBER_KEYS
            if unknown:
                param_fail(
                    key, where, f"member {item!r} has unknown keys {sorted(unknown)}; allowed: {sorted(MEMBER_KEYS)}"
                )
            if not isinstance(item.get("seed", 0), int):
                param_fail(key, where, f"member seed must be an integer, got {item.get('seed')!r}")
            members.append(dict(item))
        value = members
    if spec.choices and value not in spec.choices:
        param_fail(key, where, f"{value!r} is not one of {list(spec.choices)}")
    if spec.bounds is not None:
        _check_bounds(key, where, value, spec.bounds)
    return value


def _check_bounds(key: str, where: str, value: Any, bounds: Range) -> None:
    """Numbers must lie in ``bounds``; for a list, every item; 'auto' of str_or_float is not a number."""
    if isinstance(value, list):
        for item in value:
            if item not in bounds:
                param_fail(key, where, f"every item must be {bounds}, got {item!r}")
    elif not isinstance(value, str) and value not in bounds:
        param_fail(key, where, f"must be {bounds}, got {value!r}")


def load_yaml(path: str | Path) -> dict:
    """Read one parameter file; its relative paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"parameter file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamError(f"parameter file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ParamError(f"parameter file {str(path)!r} must hold a mapping of key: value, got {type(data).__name__}")
    where = str(path)
    base = path.resolve().parent
    return {key: coerce(key, value, where, base) for key, value in data.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from the command line; the value is read as YAML."""
    if "=" not in text:
        raise ParamError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def dump_params(params: Mapping[str, Any], path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(dict(params), sort_keys=False))


def stage_keys(stage: str) -> tuple[str, ...]:
    """The schema keys of one stage (``"training"``, ``"features"``, ...), in schema order."""
    keys = tuple(name for name, p in SCHEMA.items() if p.stage == stage)
    if not keys:
        stages = sorted({p.stage for p in SCHEMA.values()})
        raise ValueError(f"no parameter belongs to stage {stage!r}; stages: {stages}")
    return keys


@functools.cache
def _stage_class(stage: str) -> type:
    fields: list[tuple[str, Any, Any]] = [
        (key, Any, dataclasses.field(default=_frozen(SCHEMA[key].default))) for key in stage_keys(stage)
    ]
    if stage != "run":
        fields.append(("seed", int, dataclasses.field(default=SCHEMA["seed"].default)))
    return dataclasses.make_dataclass(f"{stage.title()}Config", fields, frozen=True)


def stage_config(values: Mapping[str, Any], stage: str):
    """A frozen, typed view of one stage's keys (plus the run ``seed``).

    Keys missing from ``values`` take their schema default; every value is checked with
    ``coerce``; keys of other stages are ignored. Lists come back as tuples, so the view
    is hashable and cannot be changed behind a stage's back.
    """
    cls = _stage_class(stage)
    typed = {}
    for field in dataclasses.fields(cls):
        value = values[field.name] if field.name in values else SCHEMA[field.name].default
        value = coerce(field.name, list(value) if isinstance(value, tuple) else value, f"{stage} config")
        typed[field.name] = _frozen(value)
    return cls(**typed)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value
