"""YAML for configs: safe, bounded and one-line errors; ``key=value`` text read by its field's type.

Why not plain ``yaml.safe_load``: it expands nothing, but PyYAML builds aliases as shared references, so
a "billion laughs" file (ten nested lists of ten aliases each) loads in microseconds into a graph whose
*expanded* size is 10^9 nodes, and the first code that walks it (type coercion, ``repr``, ``json``) runs
for minutes into a ``MemoryError``; a recursive alias (``&a [*a]``) walks forever. :func:`load_yaml`
composes the node graph first and refuses one that expands past :data:`MAX_NODES` or refers to itself,
before anything is built. Its errors (bad syntax, a ``!!python`` tag that ``safe_load`` refuses, a binary
file) are :class:`ConfigError` with one line that says where.

``key=value`` override text (:func:`parse_override_text`) is read as YAML only for non-text fields: a
string field gets the text as typed, so ``out_dir=/runs/a #1`` keeps its ``#1`` (YAML would drop it as a
comment) and ``out_dir=yes`` stays ``"yes"`` (YAML: ``True``); a list or mapping where text is expected is
refused rather than turned into a folder named ``[1, 2]``.
"""

from __future__ import annotations

import datetime
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from relsum.core.errors import RelsumError

#: Largest expanded size (nodes, counting every alias as a copy) of a config document. The biggest real
#: config (the demo's, every key set) is ~300 nodes; 100,000 leaves room for long lists and grade maps.
MAX_NODES = 100_000


class ConfigError(RelsumError, ValueError):
    """A config file or override that does not fit the config's fields or checks."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expanded_size(root: yaml.Node, source: str, limit: int = MAX_NODES) -> int:
    """The node count of ``root`` with aliases expanded; :class:`ConfigError` past ``limit`` or on a cycle.

    Iterative and memoised by node identity, so it costs the size of the file, not of the expansion.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                raise ConfigError(f"{source}: refused: its aliases expand to more than {limit:,} values "
                                  f"(near line {node.start_mark.line + 1}; an alias bomb?)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{source}: refused: a recursive alias (a value that contains itself, "
                              f"line {node.start_mark.line + 1})")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def _yaml_error_line(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` of one document, refusing alias bombs and recursive aliases; one-line errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expanded_size(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML for a relsum config: {_yaml_error_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: refused: nested too deeply") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """:func:`load_yaml` of a file, which must be UTF-8 text (a binary file is one clear error)."""
    data = Path(path).read_bytes()
    if b"\x00" in data:
        raise ConfigError(f"{path}: not a YAML text file (it contains NUL bytes: binary?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 YAML text file (undecodable byte at offset {exc.start}: "
                          "binary?)") from None
    return load_yaml(text, str(path))


class OverrideText(str):
    """The value text of a ``key=value`` override, read once its field's type is known."""


def yaml_kind(text: str) -> str | None:
    """``"list"`` / ``"mapping"`` when YAML reads ``text`` as one, else None (a scalar or not YAML)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "mapping" if isinstance(node, yaml.MappingNode) else None


def _value_end(node: yaml.Node | None) -> int:
    """Where a composed value's text ends; a block collection's own end mark runs over a trailing comment,
    so its last descendant's end is used."""
    if node is None:
        return 0
    while isinstance(node, yaml.CollectionNode) and not node.flow_style and _children(node):
        node = _children(node)[-1]
    return node.end_mark.index


YAML_NULLS = frozenset({"null", "Null", "NULL", "~"})


def parse_override_text(raw: str, name: str, *, text: bool, optional: bool) -> Any:
    """An override's value for a field: ``text`` fields get it as typed, others get it read as YAML.

    A text field takes the characters after ``=`` (surrounding spaces stripped, ``#`` kept); a quoted
    value (``'yes'``, ``"a b"``) is unquoted as YAML; ``null`` is None where the field allows None; text
    that YAML reads as a list or mapping is refused. Other fields read YAML, and a trailing ``# comment``
    is refused rather than dropped (``count=5 #x`` is not 5).
    """
    value = raw.strip()
    if text:
        if optional and value in YAML_NULLS:
            return None
        if value[:1] in ("'", '"'):
            parsed = load_yaml(value, f"override {name}")
            end = _value_end(yaml.compose(value, Loader=yaml.SafeLoader))
            if not isinstance(parsed, str) or end < len(value):
                raise ConfigError(f"{name}: {value} is not one quoted string")
            return parsed
        kind = yaml_kind(value)
        if kind is not None:
            raise ConfigError(f"{name}: expects text, got a YAML {kind} {value!r} (quote it to use it "
                              "as text)")
        return value
    if value == "":
        return ""
    parsed = load_yaml(value, f"override {name}")
    if _value_end(yaml.compose(value, Loader=yaml.SafeLoader)) < len(value):
        raise ConfigError(f"{name}: {value!r} has text after its value (a '#' starts a YAML comment here)")
    return parsed


def describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def is_text_type(tp: Any) -> tuple[bool, bool]:
    """(every non-None alternative of ``tp`` is text: str, Path or string literals; None is allowed)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    kinds = [a for a in args if a is not type(None)]
    text = bool(kinds) and all(
        a in (str, Path) or (typing.get_origin(a) is typing.Literal
                             and all(isinstance(v, str) for v in typing.get_args(a))) for a in kinds)
    return text, len(kinds) < len(args)


def coerce_text(value: Any, name: str) -> str:
    """A YAML value for a text field: text, an integer or a date as written; anything else is refused
    (``yes`` would become ``"True"``, ``[1, 2]`` a folder named ``[1, 2]``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise ConfigError(f"{name}: expects text, got {describe(value)} (quote it in YAML to keep it as text)")
