"""The quick schema check never says yes where jsonschema says no."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from jsonschema import Draft202012Validator

from edge.tools.builtin import BUILTIN_TOOLS
from edge.tools.quickcheck import compile_quick

SCHEMAS = [spec.input_schema for spec in BUILTIN_TOOLS]
QUICK = [s for s in SCHEMAS if compile_quick(s) is not None]

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def args_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Args near the schema: its own keys with any values, plus stray keys and non-objects."""
    names = [*list(schema.get("properties", {})), "stray"]
    keyed = st.dictionaries(st.sampled_from(names), values, max_size=len(names))
    return keyed | values


@pytest.mark.parametrize("schema", QUICK, ids=lambda s: ",".join(s.get("properties", {})))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_quick_yes_means_valid(schema: dict[str, Any], data: st.DataObject) -> None:
    quick = compile_quick(schema)
    assert quick is not None
    args = data.draw(args_for(schema))
    if quick(args):
        assert Draft202012Validator(schema).is_valid(args), args


def test_the_common_builtin_schemas_get_a_quick_check() -> None:
    assert len(QUICK) >= len(SCHEMAS) // 2, [s.get("properties") for s in SCHEMAS]
    assert any("path" in s["properties"] and "offset" in s["properties"] for s in QUICK)


def test_what_it_says() -> None:
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "offset": {"type": "integer", "minimum": 0},
            "ratio": {"type": "number", "exclusiveMaximum": 1},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "flag": {"type": "boolean"},
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    quick = compile_quick(schema)
    assert quick is not None
    assert quick({"path": "x", "offset": 3, "ratio": 0.5, "mode": "a", "flag": True})
    assert not quick({"offset": 3})  # required missing
    assert not quick({"path": ""})  # too short
    assert not quick({"path": "x", "offset": True})  # a bool is not an integer here
    assert not quick({"path": "x", "offset": 1.0})  # jsonschema decides floats
    assert not quick({"path": "x", "ratio": math.nan})
    assert not quick({"path": "x", "ratio": 1})
    assert not quick({"path": "x", "mode": "c"})
    assert not quick({"path": "x", "colour": 1})
    assert not quick(["path"])
    assert compile_quick({"type": "object", "properties": {"p": {"type": "array"}}}) is None
    assert compile_quick({"type": "object", "oneOf": []}) is None
