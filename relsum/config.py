"""Typed stage configs: dataclasses with a ``help`` on every field, loaded from YAML with CLI overrides.

Every stage has one config dataclass built from :func:`cfg`. A config is loaded with
:func:`load_config` from an optional YAML file and a list of ``key=value`` overrides; dotted keys
reach nested configs (``grpo.learning_rate=2e-5``). Values are parsed as YAML scalars, so
``true``, ``1e-5`` and ``[a, b]`` mean what they look like. Cross-field checks live in each
config's ``__post_init__`` and run again after overrides are applied.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from relsum.errors import RelsumError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(RelsumError, ValueError):
    """A config file or override that does not fit the config's fields or checks."""


def cfg(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A dataclass field with a ``help`` text; mutable defaults are copied per instance."""
    metadata = {"help": help}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-able dict of a config (nested configs become nested dicts)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = value
    return out


def flat_params(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, e.g. for logging as MLflow params."""
    out: dict[str, Any] = {}
    for key, value in to_dict(config).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params_from_dict(value, name + "."))
        else:
            out[name] = value
    return out


def flat_params_from_dict(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flat_params_from_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def field_help(cls: type, defaults: Any = None) -> dict[str, str]:
    """Dotted field name -> help text with the effective default, for ``--help`` listings.

    A nested section's defaults are read from its parent's default (``defaults``, the parent's field
    value), so a parent that customises a child (the demo's learning rate, say) shows what it really uses.
    """
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        sub = _dataclass_type(hints.get(f.name))
        if sub is not None:
            child = default if isinstance(default, sub) else None
            out.update({f"{f.name}.{k}": v for k, v in field_help(sub, child).items()})
        else:
            out[f.name] = f"{f.metadata.get('help', '')} (default: {default!r})"
    return out


def _dataclass_type(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Best-effort conversion of a YAML value to the annotated type, with a clear error."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args:
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError, ConfigError):
                continue
        raise ConfigError(f"{name}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{name}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, name) for v in value]
    if origin is dict or tp is Any or tp is dict:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "1", "yes"}:
            return True
        if str(value).lower() in {"false", "0", "no"}:
            return False
        raise ConfigError(f"{name}: {value!r} is not a boolean")
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name}: {value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not an integer") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not a number") from None
    if tp is str:
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, _prefix: str = "") -> T:
    """Build ``cls`` from a nested dict; unknown keys are an error, not silently ignored."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config keys for {cls.__name__}: {sorted(_prefix + u for u in unknown)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        sub = _dataclass_type(hints[key])
        if sub is not None and isinstance(value, dict):
            # Overrides apply on top of the field's own default (a parent may customise its child).
            default = _field_default(fields[key])
            base = to_dict(default) if dataclasses.is_dataclass(default) else {}
            kwargs[key] = from_dict(sub, _merge(base, value), _prefix=f"{_prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], _prefix + key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` with YAML scalar parsing."""
    flat: list[tuple[str, Any]] = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        flat.append((key, yaml.safe_load(raw) if raw != "" else ""))
    return nest_dotted(flat)


def nest_dotted(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a.b", 1), ("c", "x")]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in items:
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                values: Mapping[str, Any] | None = None) -> T:
    """Load ``cls`` from YAML (optional), then typed ``values`` by dotted key, then ``key=value`` overrides.

    Later wins. ``values`` are typed already (the CLI's flags), so they skip the YAML parsing that
    ``overrides`` get: a path like ``a #1/x.csv`` or ``yes`` stays the string it was typed as.
    """
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    data = _merge(data, nest_dotted((values or {}).items()))
    data = _merge(data, parse_overrides(overrides))
    config = from_dict(cls, data)
    logger.debug("loaded %s from %s with %d overrides", cls.__name__, path, len(overrides or []))
    return config


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
