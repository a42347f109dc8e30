"""A fast yes for the args of a simple schema, before jsonschema is asked.

Most calls carry args that fit: a path, a number, a flag. ``jsonschema`` takes
tens of microseconds to say so. ``compile_quick`` turns a schema made only of the
plainest keywords (an object of typed properties, ``required``,
``additionalProperties``, string lengths, number bounds, string enums) into a
check that answers ``True`` only when the args certainly fit; ``False`` means
"ask jsonschema", which then gives the verdict and the message. A schema with
anything else gets no quick check at all. ``True`` never disagrees with
jsonschema: a property test holds every built-in tool's schema to that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

#: Keywords that only describe, never constrain.
_NOTES: Final = frozenset({"description", "title", "default", "examples", "$comment"})
_TOP: Final = _NOTES | {"type", "properties", "required", "additionalProperties"}
_PROPERTY: Final = _NOTES | {
    "type",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
}
_BOUNDS: Final = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

Check = Callable[[Any], bool]


def compile_quick(schema: Mapping[str, Any]) -> Check | None:
    """A check that says ``True`` only for args that surely fit ``schema``; ``None`` when
    the schema uses more than this module understands."""
    if not isinstance(schema, Mapping) or not set(schema) <= _TOP:
        return None
    if schema.get("type") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(extra, bool):
        return None
    if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
        return None
    checks: dict[str, Check] = {}
    for name, sub in properties.items():
        check = _property(sub)
        if check is None:
            return None
        checks[name] = check
    needed = tuple(required)

    def quick(args: Any) -> bool:
        if type(args) is not dict:
            return False
        for key in needed:
            if key not in args:
                return False
        for key, value in args.items():
            check = checks.get(key)
            if check is None:
                if not extra:
                    return False
            elif not check(value):
                return False
        return True

    return quick


def _property(schema: Any) -> Check | None:
    if not isinstance(schema, Mapping) or not set(schema) <= _PROPERTY:
        return None
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean" and set(schema) <= _NOTES | {"type"}:
        return lambda value: type(value) is bool
    return None


def _string(schema: Mapping[str, Any]) -> Check | None:
    if any(k in schema for k in _BOUNDS):
        return None
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    enum = schema.get("enum")
    if type(low) is not int or (high is not None and type(high) is not int):
        return None
    if enum is not None and (
        not isinstance(enum, list) or not all(isinstance(e, str) for e in enum)
    ):
        return None
    allowed = None if enum is None else frozenset(enum)

    def check(value: Any) -> bool:
        if type(value) is not str or len(value) < low:
            return False
        if high is not None and len(value) > high:
            return False
        return allowed is None or value in allowed

    return check


def _number(schema: Mapping[str, Any], integer: bool) -> Check | None:
    if any(k in schema for k in ("minLength", "maxLength", "enum")):
        return None
    bounds = [schema.get(k) for k in _BOUNDS]
    if not all(b is None or type(b) in (int, float) for b in bounds):
        return None
    low, high, above, below = bounds
    # An integer must be an int here (jsonschema also takes 1.0: it decides those).
    kinds = (int,) if integer else (int, float)

    def check(value: Any) -> bool:
        if type(value) not in kinds or value != value:  # NaN never passes quickly
            return False
        if low is not None and value < low:
            return False
        if high is not None and value > high:
            return False
        if above is not None and value <= above:
            return False
        return below is None or value < below

    return check
