"""Typed stage configs: dataclasses with a ``help`` on every field, loaded from YAML with CLI overrides.

Every stage has one config dataclass built from :func:`cfg`. A config is loaded with
:func:`load_config` from an optional YAML file and a list of ``key=value`` overrides; dotted keys
reach nested configs (``grpo.learning_rate=2e-5``). Override values of non-text fields are parsed as
YAML, so ``true``, ``1e-5`` and ``[a, b]`` mean what they look like; a text field (``str``, ``Path``) takes
the text as typed, ``#`` included (:func:`relsum.core.config_yaml.parse_override_text`). Every value is
checked
against its field's type, list elements included, and a section must be given a mapping. Cross-field
and range checks live in each config's ``__post_init__`` and run again after overrides are applied.

Where a config class lives (issue 24): a config class lives in the ``config.py`` (pipelines: ``configs.py``)
of the package whose code reads it; it is imported from there and nowhere else. So ``ScorerConfig`` is in
:mod:`relsum.scoring.config`, ``TrackingConfig`` in :mod:`relsum.lifecycle.config`, every stage's top-level
config in :mod:`relsum.pipelines.configs`, and no stage module re-exports one. Config modules load no
numpy, pandas, torch, MLflow or the like (the standard library, other config modules and a few constants),
so ``relsum <stage> --help`` builds every default cheaply. ``tests/test_config_homes.py`` checks both.

Why by hand, not pydantic (issue 23): the gaps were a few branches of one coercion function. pydantic is
not a declared dependency; importing it takes ~90 ms and building the demo config's validator ~55 ms,
against ~60 ms for the whole of ``relsum --help``; strict mode must be configured on every stdlib
dataclass; it cannot see the ``#1`` that YAML already dropped (override text has to be read by field type
before YAML either way); and like any validator it walks the loaded values, so an alias bomb has to be
refused on the YAML node graph first (:func:`relsum.core.config_yaml.load_yaml`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from relsum.core.config_yaml import (
    ConfigError,
    OverrideText,
    coerce_text,
    describe,
    is_text_type,
    load_yaml,
    load_yaml_file,
    parse_override_text,
    yaml_kind,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["N_BOOT_MAX", "SEED_MAX", "ConfigError", "cfg", "check_range", "check_seed", "field_help",
           "flat_params", "from_dict", "load_config", "load_yaml", "parse_overrides",
           "to_dict"]

#: Seeds go to ``numpy.random.default_rng``, ``np.random.seed`` (via ``transformers.set_seed``) and torch:
#: the range all of them accept.
SEED_MAX = 2**32 - 1
#: Bootstrap resamples: each costs an (n_queries,) int32 row, so 100,000 over 10,000 queries is 4 GB.
N_BOOT_MAX = 100_000


def check_range(name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """``ValueError`` unless ``low <= value <= high`` (either bound may be None); for ``__post_init__``."""
    if (low is not None and value < low) or (high is not None and value > high):
        lo, hi = ("-inf" if low is None else f"{low:,}"), ("inf" if high is None else f"{high:,}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def check_seed(name: str, value: int) -> None:
    """A seed every RNG in the pipeline accepts: an integer in [0, 2**32 - 1]."""
    check_range(name, value, 0, SEED_MAX)


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
    """Conversion of a YAML value to the annotated type, element types included, with a clear error."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError, ConfigError) as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{name}: {describe(value)} does not fit {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{name}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expects a list, got {describe(value)}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expects a mapping, got {describe(value)}")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        for key in value:
            if key_tp is str and not isinstance(key, str | int | float):
                raise ConfigError(f"{name}: key {key!r} is not text")
        return {k: _coerce(v, value_tp, f"{name}.{k}") for k, v in value.items()}
    if tp is Any:
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
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name}: {value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not an integer") from None
    if tp is float:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not a number") from None
        if math.isnan(number):
            raise ConfigError(f"{name}: {value!r} is not a number")
        return number
    if tp is str:
        return coerce_text(value, name)
    if tp is Path:
        return Path(coerce_text(value, name))
    return value


def _section(value: Any, sub: type, tp: Any, name: str) -> Any:
    """A non-mapping value given to a section: None where the field allows it, an instance, else an error."""
    if value is None and type(None) in typing.get_args(tp):
        return None
    if isinstance(value, sub):
        return value
    raise ConfigError(f"{name}: is a section of settings ({sub.__name__}): give it a mapping of its keys, "
                      f"got {describe(value)}")


def from_dict(cls: type[T], data: dict[str, Any], *, _prefix: str = "") -> T:
    """Build ``cls`` from a nested dict; unknown keys are an error, not silently ignored.

    Values may be :class:`relsum.core.config_yaml.OverrideText` (``key=value`` text), read here once the
    field's type is known.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_prefix.rstrip('.') or cls.__name__}: expects a mapping, got {describe(data)}")
    data = _renamed(cls, data, _prefix)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        keys = sorted(_prefix + str(u) for u in unknown)
        raise ConfigError(f"unknown config keys for {cls.__name__}: {keys}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name, sub = _prefix + key, _dataclass_type(hints[key])
        if isinstance(value, OverrideText):
            text, optional = (False, True) if sub is not None else is_text_type(hints[key])
            value = parse_override_text(value, name, text=text, optional=optional)
        if sub is not None and isinstance(value, dict):
            # Overrides apply on top of the field's own default (a parent may customise its child).
            default = _field_default(fields[key])
            base = to_dict(default) if dataclasses.is_dataclass(default) else {}
            value = _renamed(sub, value, f"{name}.")  # before the defaults, so the user's old key wins them
            kwargs[key] = from_dict(sub, _merge(base, value), _prefix=f"{name}.")
        elif sub is not None:
            kwargs[key] = _section(value, sub, hints[key], name)
        else:
            kwargs[key] = _coerce(value, hints[key], name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _renamed(cls: type, data: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """``data`` with the old keys of ``cls.renamed_keys`` (``{old: new}``, a ``ClassVar``) under their new
    names, each with a one-line deprecation warning: a user's config written before a rename still loads.
    Given both (an old YAML and a new override), the new key's values go on top."""
    renamed = getattr(cls, "renamed_keys", None)
    if not renamed or not set(renamed) & set(data):
        return data
    out = dict(data)
    for old, new in renamed.items():
        if old in out:
            logger.warning("config key %s%s is deprecated: it is now %s%s", prefix, old, prefix, new)
            value = out.pop(old)
            both = isinstance(value, dict) and isinstance(out.get(new), dict)
            out[new] = _merge(value, out[new]) if both else out.get(new, value)
    return out


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def parse_overrides(overrides: list[str] | None, *, raw: bool = False) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` with YAML parsing of each value.

    ``raw=True`` keeps each value's text as an :class:`~relsum.core.config_yaml.OverrideText` for
    :func:`from_dict` to read by its field's type (what :func:`load_config` does).
    """
    flat: list[tuple[str, Any]] = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {item!r}: {key!r} is not a config key")
        if raw and yaml_kind(text) != "mapping":
            value: Any = OverrideText(text)
        else:  # a mapping (``scorer={num_threads: 1}``) merges into the section below it, as in YAML
            value = parse_override_text(text, key.strip(), text=False, optional=True)
        flat.append((key, value))
    return nest_dotted(flat)


def nest_dotted(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a.b", 1), ("c", "x")]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in items:
        node = out
        *parents, leaf = key.strip().split(".")
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(parents[:i + 1])} is set to a value and also has keys set "
                                  f"({key.strip()})")
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
    ``overrides`` of non-text fields get; an override of a text field keeps its text as typed too
    (``out_dir=a #1`` is ``"a #1"``, ``yes`` stays ``"yes"``). The file is read by
    :func:`relsum.core.config_yaml.load_yaml_file`: UTF-8 text only, no alias bombs, one-line errors.
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = load_yaml_file(path)
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    data = _merge(data, nest_dotted((values or {}).items()))
    data = _merge(data, parse_overrides(overrides, raw=True))
    config = from_dict(cls, data)
    logger.debug("loaded %s from %s with %d overrides", cls.__name__, path, len(overrides or []))
    return config
