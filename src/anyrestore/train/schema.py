"""Turning parsed YAML into typed dataclasses, strictly: an unknown, misspelt, missing or ill-typed key is
an error that names its dotted path (``optim.lr``, ``data.train.sets.0.patch_size``).

Types understood: dataclasses (nested), ``X | None``, unions of dataclasses told apart by a ``type`` key
(each class has a ``KIND`` class attribute), other unions (first arm that fits), ``list[X]``,
``tuple[X, ...]`` / fixed tuples, ``dict[str, Any]``, ``Literal[...]``, ``bool``, ``int``, ``float``,
``str`` and ``Any``. Numbers written as YAML strings (``2e-4``, which YAML 1.1 reads as text) are
accepted where a number is expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from anyrestore.errors import AnyRestoreError


class SchemaError(AnyRestoreError):
    """A value does not fit the schema; the message starts with the key's dotted path."""


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _fail(path: str, problem: str) -> SchemaError:
    return SchemaError(f"{path or '(top level)'}: {problem}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        item = typing.get_args(tp)[0]
        return "a list of mappings" if dataclasses.is_dataclass(item) else f"a list of {_describe(item)}"
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} numbers"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _number(value: Any, path: str, integer: bool) -> int | float:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool):
        raise _fail(path, f"expected {kind}, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.replace("_", ""))
        except ValueError:
            raise _fail(path, f"expected {kind}, got {value!r}") from None
    if not isinstance(value, int | float):
        raise _fail(path, f"expected {kind}, got {type(value).__name__}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise _fail(path, f"expected an integer, got {value!r}")
        return int(value)
    return float(value)


def convert(tp: Any, value: Any, path: str) -> Any:
    """``value`` checked against (and converted to) the type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            raise _fail(path, f"expected null, got {value!r}")
        return None
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(tp), value, path)
    if value is None:
        raise _fail(path, "a value is required here (got null)")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise _fail(path, f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _fail(path, f"expected {_describe(tp)}, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [convert(item, v, _join(path, i)) for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _fail(path, f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(args[0], v, _join(path, i)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(path, f"expected {len(args)} values, got {len(value)}")
        return tuple(convert(a, v, _join(path, i)) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {value!r}")
        return value
    if tp is int or tp is float:
        return _number(value, path, integer=tp is int)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, f"expected text, got {value!r}")
        return value
    raise TypeError(f"schema type {tp!r} is not supported")


def _convert_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise _fail(path, "a value is required here (got null)")
    arms = [a for a in args if a is not type(None)]
    kinds = {getattr(a, "KIND", None): a for a in arms if dataclasses.is_dataclass(a)}
    if len(kinds) > 1 and None not in kinds:
        if not isinstance(value, Mapping):
            raise _fail(path, f"expected a mapping, got {type(value).__name__}")
        kind = value.get("type")
        if kind not in kinds:
            known = ", ".join(map(str, kinds))
            raise _fail(_join(path, "type"), f"expected one of {known}, got {kind!r}")
        return from_dict(kinds[kind], value, path)
    errors = []
    for arm in arms:
        try:
            return convert(arm, value, path)
        except SchemaError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise _fail(path, f"expected {' or '.join(_describe(a) for a in arms)}, got {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """An instance of the dataclass ``cls`` from a mapping, checking every key."""
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise _fail(_join(path, key), f"unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _fail(_join(path, name), "missing required key")
    kind = getattr(cls, "KIND", None)
    if kind is not None and kwargs.get("type") != kind:
        raise _fail(_join(path, "type"), f"expected {kind!r}, got {kwargs.get('type')!r}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain YAML-ready data (dicts, lists, scalars) of a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj
