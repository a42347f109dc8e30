"""The plugin SDK (edge.plugin): schemas from hints, validation, the context, results."""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

import jsonschema
import pydantic
import pytest
import trio

from edge.plugin import ArgumentError, Context, HostError, Plugin, as_result


def schema_of(func: Any, **options: Any) -> dict[str, Any]:
    plugin = Plugin()
    plugin.tool(**options)(func)
    (tool,) = plugin.tools.values()
    return tool.input_schema


def test_schema_from_hints_defaults_optional_and_lists() -> None:
    def search(
        query: str, limit: int = 10, tags: list[str] | None = None, exact: bool = False,
        mode: Literal["fast", "full"] = "fast", weights: dict[str, float] | None = None,
    ) -> dict:  # fmt: skip
        return {}

    assert schema_of(search) == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "tags": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                "default": None,
            },
            "exact": {"type": "boolean", "default": False},
            "mode": {"type": "string", "enum": ["fast", "full"], "default": "fast"},
            "weights": {
                "anyOf": [
                    {"type": "object", "additionalProperties": {"type": "number"}},
                    {"type": "null"},
                ],
                "default": None,
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_field_constraints_and_a_property_called_title() -> None:
    def page(title: str, n: Annotated[int, pydantic.Field(ge=1, description="page")] = 1) -> str:
        return title

    assert schema_of(page) == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "n": {"type": "integer", "minimum": 1, "description": "page", "default": 1},
        },
        "required": ["title"],
        "additionalProperties": False,
    }


def test_names_that_pydantic_models_use_are_fine() -> None:
    def odd(json: str, schema: int = 0, model_config: bool = False) -> str:
        return json

    plugin = Plugin()
    plugin.tool(odd)
    tool = plugin.tools["odd"]
    assert set(tool.input_schema["properties"]) == {"json", "schema", "model_config"}
    assert tool.arguments({"json": "x", "schema": 2}, Context.detached()) == {
        "json": "x", "schema": 2, "model_config": False,
    }  # fmt: skip


def test_name_description_timeout_and_the_docstring() -> None:
    plugin = Plugin()

    @plugin.tool
    def plain(a: int) -> int:
        """Doubles a.

        More words.
        """
        return 2 * a

    @plugin.tool(name="renamed", description="explicit", timeout=30)
    async def other(a: int) -> int:
        return a

    assert plugin.tools["plain"].description == "Doubles a.\n\nMore words."
    assert plugin.tools["renamed"].describe() == {
        "name": "renamed",
        "description": "explicit",
        "input_schema": plugin.tools["renamed"].input_schema,
        "timeout": 30.0,
    }
    assert plugin.tools["renamed"].is_async
    assert not plugin.tools["plain"].is_async
    # The decorators give the functions back unchanged.
    assert plain(4) == 8
    assert trio.run(other, 5) == 5


def test_the_context_parameter_is_not_in_the_schema() -> None:
    plugin = Plugin()

    @plugin.tool
    async def slow(seconds: float, context: Context) -> dict:
        return {"seconds": seconds, "plugin": context.plugin_id}

    tool = plugin.tools["slow"]
    assert tool.context_param == "context"
    assert tool.input_schema["properties"] == {"seconds": {"type": "number"}}
    assert tool.input_schema["required"] == ["seconds"]
    ctx = Context.detached(plugin_id="p")
    kwargs = tool.arguments({"seconds": 2}, ctx)
    assert kwargs == {"seconds": 2.0, "context": ctx}
    assert trio.run(lambda: slow(**kwargs)) == {"seconds": 2.0, "plugin": "p"}


def test_validation_is_strict_and_matches_the_schema() -> None:
    def add(a: int, b: float = 1.0, tags: list[str] | None = None) -> dict:
        return {}

    plugin = Plugin()
    plugin.tool(add)
    tool = plugin.tools["add"]
    ctx = Context.detached()
    validator = jsonschema.Draft202012Validator(tool.input_schema)
    accepted = [
        {"a": 1}, {"a": 1, "b": 2}, {"a": -3, "b": 0.5, "tags": ["x"]}, {"a": 1, "tags": None},
    ]  # fmt: skip
    rejected = [
        {}, {"a": "1"}, {"a": True}, {"a": 1, "c": 2}, {"a": 1, "tags": ["x", 3]},
        {"a": 1, "b": "2"}, {"a": None},
    ]  # fmt: skip
    for args in accepted:
        assert validator.is_valid(args), args
        tool.arguments(args, ctx)
    for args in rejected:
        assert not validator.is_valid(args), args
        with pytest.raises(ArgumentError):
            tool.arguments(args, ctx)


def test_validation_errors_read_clearly() -> None:
    def add(a: int, tags: list[str] | None = None) -> dict:
        return {}

    plugin = Plugin()
    plugin.tool(add)
    with pytest.raises(ArgumentError) as info:
        plugin.tools["add"].arguments({"tags": ["ok", 7], "zz": 1}, Context.detached())
    assert str(info.value) == (
        "add: a: Field required; tags.1: Input should be a valid string (got 7); "
        "zz: Extra inputs are not permitted"
    )
    with pytest.raises(ArgumentError, match=r"add: the arguments are not JSON"):
        plugin.tools["add"].arguments({"a": b"bytes"}, Context.detached())


def test_an_explicit_schema_is_what_is_validated() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 1}},
        "required": ["city"],
    }
    plugin = Plugin()

    @plugin.tool(schema=schema)
    def weather(ctx: Context, **args: Any) -> dict:
        return {"city": args["city"]}

    tool = plugin.tools["weather"]
    assert tool.input_schema == schema
    ctx = Context.detached()
    assert tool.arguments({"city": "Oslo", "extra": 1}, ctx) == {
        "city": "Oslo", "extra": 1, "ctx": ctx,
    }  # fmt: skip
    with pytest.raises(ArgumentError, match=r"^weather: city: '' "):
        tool.arguments({"city": ""}, ctx)
    with pytest.raises(ArgumentError, match=r"'city' is a required property"):
        tool.arguments({}, ctx)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schema": {"type": "array"}}, 'must be of "type": "object"'),
        ({"schema": {"type": "object", "properties": 3}}, "not a valid JSON Schema"),
        ({"name": "has space"}, "must match"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_tool_options_are_refused(options: dict[str, Any], message: str) -> None:
    def tool(a: int) -> int:
        return a

    with pytest.raises(ValueError, match=message):
        Plugin().tool(**options)(tool)


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


def test_a_pydantic_model_argument() -> None:
    def plot(point: Point, points: list[Point] | None = None) -> dict:
        return {}

    plugin = Plugin()
    plugin.tool(plot)
    tool = plugin.tools["plot"]
    schema = tool.input_schema
    assert schema["properties"]["point"] == {"$ref": "#/$defs/Point"}
    assert schema["$defs"]["Point"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
        "required": ["x"],
    }
    kwargs = tool.arguments({"point": {"x": 1}, "points": [{"x": 2, "y": 3}]}, Context.detached())
    assert kwargs == {"point": Point(x=1), "points": [Point(x=2, y=3)]}
    with pytest.raises(ArgumentError, match=r"point.x: Input should be a valid integer"):
        tool.arguments({"point": {"x": "1"}}, Context.detached())


class Opaque:
    """A type pydantic makes no schema of."""


def test_signatures_that_take_no_json_are_refused() -> None:
    def star(*args: int) -> None: ...

    def positional(a: int, /) -> None: ...

    def unknown(a: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    def opaque(a: Opaque) -> None: ...

    for func in (star, positional):
        with pytest.raises(TypeError, match="must be a plain or keyword parameter"):
            Plugin().tool(func)
    with pytest.raises(TypeError, match="cannot read its signature"):
        Plugin().tool(unknown)
    with pytest.raises(TypeError, match="make no JSON Schema"):
        Plugin().tool(opaque)


def test_a_tool_name_is_taken_once() -> None:
    plugin = Plugin()

    @plugin.tool
    def one() -> None: ...

    with pytest.raises(ValueError, match="already has a tool named 'one'"):
        plugin.tool(name="one")(lambda: None)


def test_config_handlers_and_hooks_are_recorded() -> None:
    plugin = Plugin()

    @plugin.on_config
    def changed(config: dict) -> None: ...

    @plugin.hook("capture_status")
    async def status(event: dict) -> None: ...

    assert plugin.config_handlers == [changed]
    assert plugin.hooks == {"capture_status": [status]}
    with pytest.raises(ValueError, match="non-empty string"):
        plugin.hook("")


@pytest.mark.parametrize(
    ("value", "result"),
    [
        ({"sum": 3}, {"sum": 3}),
        ({"error": "nope"}, {"error": "nope"}),
        ("text", {"output": "text"}),
        (None, {"output": ""}),
        (42, {"output": "42"}),
        ([1, "é"], {"output": '[1, "é"]'}),
        (True, {"output": "true"}),
        ({1}, {"output": "{1}"}),  # a set is not JSON: str() of it
    ],
)
def test_return_values_become_results(value: Any, result: dict[str, Any]) -> None:
    assert as_result(value) == result


def test_a_dict_result_must_be_json() -> None:
    with pytest.raises(TypeError, match="not JSON"):
        as_result({"when": object()})
    with pytest.raises(TypeError, match="not JSON"):
        as_result({"x": float("nan")})


def test_a_detached_context_records_and_refuses() -> None:
    ctx = Context.detached({"unit": "C"}, plugin_id="demo", call_id="c1")
    assert (ctx.plugin_id, ctx.call_id, ctx.config) == ("demo", "c1", {"unit": "C"})
    ctx.progress(1, 2, "half")
    ctx.log("hello", level="debug")
    assert ctx.sent == [
        ("progress", {"id": 0, "done": 1, "total": 2, "message": "half"}),
        ("log", {"level": "debug", "message": "hello"}),
    ]
    assert not ctx.cancelled
    ctx.cancel()
    assert ctx.cancelled
    with pytest.raises(ValueError, match="log level 'loud'"):
        ctx.log("x", level="loud")
    with pytest.raises(TypeError):
        ctx.progress("1")  # type: ignore[arg-type]

    async def ask() -> None:
        await ctx.call_tool("other", {})

    with pytest.raises(HostError) as info:
        trio.run(ask)
    assert info.value.code == "not_connected"


def test_host_error_copies_with_its_arguments() -> None:
    error = HostError("not_declared", "events is not declared")
    twin = copy.copy(error)
    assert (twin.code, twin.message, str(twin)) == (
        "not_declared", "events is not declared", "not_declared: events is not declared",
    )  # fmt: skip
