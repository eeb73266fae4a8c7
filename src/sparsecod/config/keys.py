"""The one mechanism behind every config key: a field of a frozen pydantic dataclass.

    @section("train")
    class TrainConfig:
        seq_len: Int = key(1024, "tokens per training window T (protocol §1.5)", ge=1)

A key's type, default, bounds and description are that field; construction validates types, bounds and unknown
keys, and a pydantic ValidationError becomes a one-line ConfigError naming the key ("train.seq_len must be >= 1,
got 0"). Cross-field rules stay in `__post_init__`, raising ConfigError themselves. config.schema builds the
workflow's JSON schema from the same fields. The instances are ordinary frozen dataclasses (dataclasses.replace,
asdict and repr work as before).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Annotated, Any

import pydantic
from pydantic import BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.json_schema import SkipJsonSchema

from .errors import ConfigError


def _as_int(value: Any) -> int:
    """1000, 1e9 (a float, or the string YAML reads `1e9` as) and '10_000' -> int; 1.5, True, 'x' fail."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, (float, str)):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number == int(number):
            return int(number)
    raise ValueError("must be an integer")


def _as_real(value: Any) -> Any:
    """A number (or the string YAML reads `1e-3` as); True and 'x' fail."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("must be a number") from None
    return value


Int = Annotated[int, BeforeValidator(_as_int)]
Real = Annotated[float, BeforeValidator(_as_real)]
Bool = Annotated[bool, Strict()]


def key(default: Any = dataclasses.MISSING, doc: str = "", **bounds: Any) -> Any:
    """A config key: its default (none = required), description and bounds (ge, gt, le, lt, min_length, ...)."""
    if default is dataclasses.MISSING:
        return Field(description=doc or None, **bounds)
    if isinstance(default, (list, dict, set)):
        raise TypeError("give a tuple (or None) as the default of a list key")
    return Field(default, description=doc or None, **bounds)


def section(where: str, **extra: Any):
    """Class decorator: a frozen pydantic dataclass rejecting unknown keys, whose errors are ConfigErrors naming
    `<where>.<key>`. `extra` goes to pydantic's ConfigDict (e.g. json_schema_extra)."""

    def build(cls: type) -> type:
        cls = pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid", **extra))(cls)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as err:
                raise config_error(err, where, cls) from None

        cls.__init__ = __init__
        cls.config_section = where
        cls._validating_init = init
        return cls

    return build


def key_names(cls: type) -> list[str]:
    """The user-facing keys of a section class, in definition order (internal fields are SkipJsonSchema)."""
    return [name for name, f in cls.__pydantic_fields__.items()
            if not any(isinstance(m, SkipJsonSchema) for m in f.metadata)]


def check_keys(mapping: dict[str, Any], known: typing.Iterable[str], where: str) -> None:
    """Unknown keys of `mapping` fail, naming them and the known ones."""
    known = list(known)
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise unknown_keys(where, unknown, known)


def unknown_keys(where: str, unknown: list[str], known: list[str]) -> ConfigError:
    return ConfigError(f"unknown {where} key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                       f"known: {', '.join(known)}")


def from_mapping(cls: type, data: Any, where: str | None = None) -> Any:
    """Build section `cls` from a YAML mapping (None = every default); errors name `where.<key>` (default: the
    section's name, e.g. sweeps.depth-deep for one entry of a mapping of sections)."""
    where = where or cls.config_section
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key {where!r} must be a mapping, got {type(data).__name__}")
    obj = cls.__new__(cls)
    try:
        cls._validating_init(obj, **data)
    except ValidationError as err:
        raise config_error(err, where, cls) from None
    return obj


_PHRASES = {
    "greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}", "enum": "must be one of {expected}",
    "too_short": "must list at least {min_length} item(s)", "string_too_short": "must be a non-empty string",
    "string_pattern_mismatch": "must match {pattern}", "bool_type": "must be true or false",
    "string_type": "must be a string", "float_type": "must be a number", "int_type": "must be an integer",
    "tuple_type": "must be a list", "list_type": "must be a list", "dict_type": "must be a mapping",
    "dataclass_type": "must be a mapping", "dataclass_exact_type": "must be a mapping",
}


def config_error(err: ValidationError, where: str, cls: type) -> ConfigError:
    """The first error of `err` as one line naming the key; a ConfigError raised by a validator is kept as is."""
    errors = err.errors()
    for e in errors:
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            return cause
    e = errors[0]
    unknown_key = e["type"] in ("unexpected_keyword_argument", "extra_forbidden")
    owner, path = _owner(cls, e["loc"], unknown_key)
    name = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    if unknown_key:
        parent = name.rpartition(".")[0]
        unknown = sorted({str(x["loc"][-1]) for x in errors if x["type"] == e["type"]})
        return unknown_keys(parent, unknown, key_names(owner))
    if e["type"] in ("missing", "missing_argument"):
        return ConfigError(f"{name} is required (no default); add it")
    if e["type"] == "literal_error":
        field = [p for p in path if isinstance(p, str)][-1]
        choices = [c for c in _flat(owner.__pydantic_fields__[field].annotation) if isinstance(c, (str, int, float))]
        return ConfigError(f"{name}={e.get('input')!r}: use one of {', '.join(map(_yaml, choices))}")
    if e["type"] == "value_error":
        phrase = e["msg"].removeprefix("Value error, ")
    elif e["type"] in _PHRASES:
        phrase = _PHRASES[e["type"]].format(**(e.get("ctx") or {}))
    else:
        phrase = "is invalid: " + e["msg"][0].lower() + e["msg"][1:]
    return ConfigError(f"{name} {phrase}, got {e.get('input')!r}")


def _owner(cls: type, loc: tuple, unknown_key: bool) -> tuple[type, list]:
    """(the section class holding the last key of `loc`, the key path: field names and list indices)."""
    owner, path = cls, []
    for i, part in enumerate(loc):
        fields = getattr(owner, "__pydantic_fields__", {})
        if isinstance(part, int):
            path.append(part)
        elif part in fields:
            path.append(part)
            nested = [t for t in _flat(fields[part].annotation) if dataclasses.is_dataclass(t)]
            owner = nested[0] if nested else owner
        else:  # the unknown key itself, or a union member's tag (not part of the key)
            if unknown_key and i == len(loc) - 1:
                path.append(part)
            break
    return owner, path


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _flat(annotation: Any) -> list:
    args = typing.get_args(annotation)
    return [a for arg in args for a in _flat(arg)] if args else [annotation]
