"""Shape checks for what fastmeter reads back from disk (trace metadata, run.json, sweep.json, Arrow columns).

Files are edited by hand, truncated, or written by other versions; a reader that trusts them fails deep inside a
renderer with a traceback. Each check here names the file, the key path and what was expected, as one
FastmeterError."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fastmeter.errors import FastmeterError


@dataclass(frozen=True)
class Shape:
    ok: Callable[[Any], bool]
    expected: str


# JSON allows integers no float holds (10**400); every figure is used as a float, so such a value is corrupt.
_FLOAT_MAX = int(sys.float_info.max)


def _number(v: Any) -> bool:
    return isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _FLOAT_MAX)


NUMBER = Shape(lambda v: v is None or _number(v), "a number or null")
INT = Shape(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null")
TEXT = Shape(lambda v: v is None or isinstance(v, str), "a string or null")
BOOL = Shape(lambda v: v is None or isinstance(v, bool), "true, false or null")
OBJECT = Shape(lambda v: v is None or isinstance(v, dict), "an object or null")
TEXT_LIST = Shape(lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                  "a list of strings or null")
NUMBER_MAP = Shape(lambda v: v is None or (isinstance(v, dict) and all(v[k] is None or _number(v[k]) for k in v)),
                   "an object of numbers or null")
TEXT_MAP = Shape(lambda v: v is None or (isinstance(v, dict) and all(isinstance(v[k], str) for k in v)),
                 "an object of strings or null")
INT_PAIR = Shape(lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(
    isinstance(x, int) and not isinstance(x, bool) for x in v)), "a list of two integers or null")
# A run's summary: figures are numbers; these few entries are text, and these are objects of figures and text.
SUMMARY_TEXT_KEYS = ("scorer", "accuracy_error")
SUMMARY_OBJECT_KEYS = ("carbon", "cost")
_FIGURES_AND_TEXT = Shape(lambda v: v is None or (isinstance(v, dict) and all(
    x is None or _number(x) or isinstance(x, str) for x in v.values())), "an object of numbers and strings or null")


def check_object(obj: Any, shapes: Mapping[str, Shape | Mapping[str, Any]], where: str) -> dict[str, Any]:
    """`obj` must be a JSON object; each key of `shapes` present in it must have that shape (a nested mapping
    checks a nested object). Keys not in `shapes` are left alone (newer writers may add some)."""
    if not isinstance(obj, dict):
        raise FastmeterError(f"{where} must be a JSON object, got {_short(obj)}")
    for key, shape in shapes.items():
        if key not in obj:
            continue
        value = obj[key]
        if isinstance(shape, Shape):
            if not shape.ok(value):
                raise FastmeterError(f"{where}: {key!r} must be {shape.expected}, got {_short(value)}")
        elif value is not None:
            check_object(value, shape, f"{where}: {key!r}")
    return obj


def check_summary(summary: Any, where: str) -> dict[str, Any]:
    """Every value of a run's summary has its figure's shape; a number written as text ("12.5") is refused."""
    if not isinstance(summary, dict):
        raise FastmeterError(f"{where} must be a JSON object, got {_short(summary)}")
    for key, value in summary.items():
        shape = TEXT if key in SUMMARY_TEXT_KEYS else _FIGURES_AND_TEXT if key in SUMMARY_OBJECT_KEYS else NUMBER
        if not shape.ok(value):
            raise FastmeterError(f"{where}: {key!r} must be {shape.expected}, got {_short(value)}")
    return summary


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Arrow column kinds: a predicate on the type and how to say it.
INT64 = Shape(lambda t: pa.types.is_integer(t), "integers")
FLOAT = Shape(lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t), "numbers")
BOOLEAN = Shape(lambda t: pa.types.is_boolean(t) or pa.types.is_null(t), "booleans")
STRINGS = Shape(lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or (
    pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)), "strings")


def check_columns(table: pa.Table, columns: Mapping[str, Shape], where: str, fix: str) -> pa.Table:
    """`table` has each column of `columns` with a type of that kind."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise FastmeterError(f"{where} lacks columns {', '.join(missing)}; {fix}")
    for name, kind in columns.items():
        t = table.schema.field(name).type
        if not kind.ok(t):
            raise FastmeterError(f"{where}: column {name!r} must hold {kind.expected}, not {t}; {fix}")
    return table

