"""The plugin SDK: what an edge plugin's Python code imports.

A plugin is a directory with a ``plugin.toml`` and an entry module (``main.py``)
that holds one ``Plugin``::

    import trio
    from edge.plugin import Context, Plugin

    plugin = Plugin()

    @plugin.tool
    def add(a: int, b: int = 1) -> dict:
        \"\"\"Add two numbers.\"\"\"           # the tool's description
        return {"sum": a + b}

    @plugin.tool(timeout=30)
    async def slow(ctx: Context, seconds: float) -> dict:
        for i in range(10):
            ctx.progress(i, 10, "working")
            await trio.sleep(seconds / 10)
        return {"done": True}

    @plugin.on_config
    def changed(config: dict) -> None: ...

    @plugin.hook("capture_status")
    def on_capture(event: dict) -> None: ...

Tools:
    * The arguments' JSON Schema comes from the type hints and defaults (pydantic);
      ``schema=`` gives one explicitly instead (then the arguments are checked
      against it with jsonschema and passed as they are). Arguments are validated
      strictly before the call: ``"3"`` is no ``int``, unknown names are refused.
    * A parameter annotated ``Context`` (any name) receives the call's context;
      it is not part of the schema.
    * ``async def`` tools run in edge's runner on trio (not asyncio); plain
      ``def`` tools run in a worker thread, so they may block. A cancelled sync
      tool cannot be stopped from outside: it should look at ``ctx.cancelled``.
    * What a tool returns becomes its result (``as_result``): a dict is the result
      itself; a string ``s`` becomes ``{"output": s}``; ``None`` ``{"output": ""}``;
      any other JSON value its JSON text as ``output``; anything else ``str()`` of it.
      An exception becomes an error result ``"ExcType: message"``.
    * The decorators return the function unchanged, so tests call tools directly
      (``Context.detached()`` stands in for the runner).

Context (``ctx``): ``call_id``, ``plugin_id``, ``config`` (the current config),
``cancelled``, ``progress(done, total, message)`` and ``log(message, level)``
(never block; usable from any thread), and the requests to edge ``await
ctx.call_tool(name, args)``, ``await ctx.publish(type, data)`` and ``await
ctx.get_config()``; sync tools (in their worker thread) use the twins
``call_tool_sync``, ``publish_sync``, ``get_config_sync``. A request edge refuses
raises ``HostError`` (``code`` ``not_declared`` when the manifest does not
declare the capability).
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, TypeVar, final, overload

import trio

__all__ = [
    "SDK_VERSION",
    "ArgumentError",
    "Context",
    "HostError",
    "HostLink",
    "Plugin",
    "Tool",
    "as_result",
]

#: The SDK version the runner announces in ``hello``; manifests ask for a range of it.
SDK_VERSION: Final = "1.0"
#: What a tool name looks like.
TOOL_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
#: The levels ``Context.log`` takes.
LOG_LEVELS: Final = frozenset({"debug", "info", "warning", "error"})
#: Characters of a rejected argument's value quoted in an error message.
QUOTE_CHARS: Final = 60

F = TypeVar("F", bound=Callable[..., Any])
ConfigHandler = Callable[[dict[str, Any]], Any]
HookHandler = Callable[[dict[str, Any]], Any]


class HostError(Exception):
    """edge refused or failed a request a plugin made (``code`` is one of the RPC error codes)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ArgumentError(ValueError):
    """A call's arguments do not fit the tool's schema; the message says how."""


class HostLink(Protocol):
    """What a ``Context`` talks through: the runner's connection to edge."""

    def emit(self, method: str, payload: dict[str, Any], plugin: str) -> None:
        """Send an event; thread-safe, never blocks (dropped when the link is backed up)."""

    async def request(self, method: str, payload: dict[str, Any], plugin: str) -> Any:
        """Send a request and return the response's payload (``HostError`` if refused)."""


class _DetachedLink:
    """The link of ``Context.detached``: events are kept in ``sent``; requests fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def emit(self, method: str, payload: dict[str, Any], plugin: str) -> None:
        self.sent.append((method, payload))

    async def request(self, method: str, payload: dict[str, Any], plugin: str) -> Any:
        raise HostError("not_connected", f"{method}: this context is not connected to edge")


@final
class Context:
    """One tool call's view of edge (see the module docstring)."""

    def __init__(
        self,
        *,
        plugin_id: str,
        call_id: str | int | None,
        request_id: int,
        config: Callable[[], dict[str, Any]],
        link: HostLink,
    ) -> None:
        self.plugin_id = plugin_id
        self.call_id = call_id
        #: The id of the ``call`` request (what progress events name).
        self.request_id = request_id
        self._config = config
        self._link = link
        self._cancelled = threading.Event()

    @classmethod
    def detached(
        cls, config: dict[str, Any] | None = None, *, plugin_id: str = "test",
        call_id: str = "test",
    ) -> Context:  # fmt: skip
        """A context connected to nothing, for calling tools in tests.

        Its progress and log events are kept in ``sent`` as ``(method, payload)``;
        requests to edge raise ``HostError("not_connected", ...)``.
        """
        link = _DetachedLink()
        ctx = cls(
            plugin_id=plugin_id, call_id=call_id, request_id=0,
            config=lambda: config if config is not None else {}, link=link,
        )  # fmt: skip
        ctx.sent = link.sent
        return ctx

    #: What a detached context sent (``None`` when connected to edge).
    sent: list[tuple[str, dict[str, Any]]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The plugin's current config (replaced as a whole when edge pushes a new one)."""
        return self._config()

    @property
    def cancelled(self) -> bool:
        """True once the call is cancelled or past its deadline (a sync tool should stop)."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Mark the call cancelled (the runner does this; ``cancelled`` turns true)."""
        self._cancelled.set()

    def progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress to whoever called; never blocks, any thread.

        Raises:
            TypeError: ``done``/``total`` not numbers, or ``message`` not a string.
        """
        if not _is_number(done) or (total is not None and not _is_number(total)):
            raise TypeError("progress: done and total must be numbers")
        if message is not None and not isinstance(message, str):
            raise TypeError("progress: message must be a string")
        payload = {"id": self.request_id, "done": done, "total": total, "message": message}
        self._link.emit("progress", payload, self.plugin_id)

    def log(self, message: str, level: str = "info") -> None:
        """Write ``message`` to edge's log (capability ``log``); never blocks, any thread.

        Raises:
            ValueError: ``level`` is none of debug, info, warning, error.
        """
        if level not in LOG_LEVELS:
            raise ValueError(f"log level {level!r} is none of {', '.join(sorted(LOG_LEVELS))}")
        self._link.emit("log", {"level": level, "message": str(message)}, self.plugin_id)

    async def call_tool(self, name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call another edge tool (capability ``tools.call``) and return its result dict.

        Raises:
            HostError: edge refused the call (``not_declared``, ``unknown_tool``, ...).
        """
        payload = {"tool": name, "args": dict(args or {})}
        result: dict[str, Any] = await self._link.request("tools.call", payload, self.plugin_id)
        return result

    async def ask_agent(
        self,
        agent: str,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        within: float | None = None,
    ) -> dict[str, Any]:
        """Ask another agent (an edge the cloud relays to, by id or name) to run ``tool``
        and return its result dict (capability ``agents``). It runs there under that edge's
        policy and approval; ``within`` (seconds, default 60) becomes the request's
        deadline; cancelling this call cancels the request.

        Raises:
            HostError: edge refused it (``not_declared``, ...).
        """
        payload: dict[str, Any] = {"agent": agent, "tool": tool, "args": dict(args or {})}
        if within is not None:
            payload["timeout"] = within
        result: dict[str, Any] = await self._link.request("agents.ask", payload, self.plugin_id)
        return result

    async def publish(self, type: str, data: Any = None) -> None:
        """Publish an event to edge's event stream (capability ``events``).

        Raises:
            HostError: edge refused it.
        """
        await self._link.request("publish", {"type": type, "data": data}, self.plugin_id)

    async def get_config(self) -> dict[str, Any]:
        """Ask edge for the plugin's config (capability ``config``).

        Raises:
            HostError: edge refused it.
        """
        config: dict[str, Any] = await self._link.request("config.get", {}, self.plugin_id)
        return config

    def call_tool_sync(self, name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``call_tool`` for a sync tool, from its worker thread."""
        return trio.from_thread.run(self.call_tool, name, args)

    def ask_agent_sync(
        self,
        agent: str,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        within: float | None = None,
    ) -> dict[str, Any]:
        """``ask_agent`` for a sync tool, from its worker thread."""
        return trio.from_thread.run(partial(self.ask_agent, agent, tool, args, within=within))

    def publish_sync(self, type: str, data: Any = None) -> None:
        """``publish`` for a sync tool, from its worker thread."""
        trio.from_thread.run(self.publish, type, data)

    def get_config_sync(self) -> dict[str, Any]:
        """``get_config`` for a sync tool, from its worker thread."""
        return trio.from_thread.run(self.get_config)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool as the runner registers it, with the function that implements it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    func: Callable[..., Any] = field(repr=False)
    #: Validates a call's arguments into ``func``'s keyword arguments (``ArgumentError``).
    check: Callable[[dict[str, Any]], dict[str, Any]] = field(repr=False)
    #: Seconds a call may take (``None``: edge's default).
    timeout: float | None = None
    #: The name of the parameter that receives the ``Context`` (``None``: none does).
    context_param: str | None = None
    is_async: bool = False

    def describe(self) -> dict[str, Any]:
        """The tool as ``register`` sends it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "timeout": self.timeout,
        }

    def arguments(self, args: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        """The keyword arguments to call ``func`` with: ``args`` validated, ``ctx`` added.

        Raises:
            ArgumentError: ``args`` do not fit the schema.
        """
        kwargs = self.check(dict(args))
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        return kwargs


class Plugin:
    """A plugin's tools, its config handler and its hooks: one per entry module."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self.hooks: dict[str, list[HookHandler]] = {}
        self.config_handlers: list[ConfigHandler] = []

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self, *, name: str | None = None, description: str | None = None,
        schema: dict[str, Any] | None = None, timeout: float | None = None,
    ) -> Callable[[F], F]: ...  # fmt: skip

    def tool(
        self, func: Callable[..., Any] | None = None, *, name: str | None = None,
        description: str | None = None, schema: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:  # fmt: skip
        """Register ``func`` as a tool: ``@plugin.tool`` or ``@plugin.tool(name=..., ...)``.

        Args:
            name: the tool's name (default: the function's).
            description: what it does (default: the docstring).
            schema: the arguments' JSON Schema (default: derived from the type hints).
            timeout: seconds a call may take.

        Raises:
            TypeError: the function's signature cannot be made a schema.
            ValueError: a bad name, a name already taken, a bad schema or timeout.
        """

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            spec = make_tool(fn, name=name, description=description, schema=schema, timeout=timeout)
            if spec.name in self.tools:
                raise ValueError(f"this plugin already has a tool named {spec.name!r}")
            self.tools[spec.name] = spec
            return fn

        return register if func is None else register(func)

    def on_config(self, func: F) -> F:
        """Call ``func(config)`` whenever edge pushes a new config (sync: in a thread)."""
        self.config_handlers.append(func)
        return func

    def hook(self, event_type: str) -> Callable[[F], F]:
        """Call the decorated ``func(event)`` for each edge event of ``event_type``."""
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("hook: the event type must be a non-empty string")

        def register(fn: F) -> F:
            self.hooks.setdefault(event_type, []).append(fn)
            return fn

        return register


def make_tool(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Tool:
    """The ``Tool`` for ``func`` (see ``Plugin.tool`` for the arguments and errors)."""
    tool_name = name if name is not None else getattr(func, "__name__", "")
    if not isinstance(tool_name, str) or not TOOL_NAME.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must match {TOOL_NAME.pattern}")
    if timeout is not None and (not _is_number(timeout) or not timeout > 0):
        raise ValueError(f"tool {tool_name}: timeout must be a positive number of seconds")
    try:
        signature = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, ValueError, SyntaxError) as exc:
        raise TypeError(f"tool {tool_name}: cannot read its signature: {exc}") from None
    context_param = next(
        (p.name for p in signature.parameters.values() if p.annotation is Context), None
    )
    params = [p for p in signature.parameters.values() if p.name != context_param]
    if schema is not None:
        input_schema, check = _explicit_schema(tool_name, schema)
    else:
        input_schema, check = _derived_schema(tool_name, params)
    return Tool(
        name=tool_name,
        description=description if description is not None else inspect.getdoc(func) or "",
        input_schema=input_schema,
        func=func,
        check=check,
        timeout=None if timeout is None else float(timeout),
        context_param=context_param,
        is_async=inspect.iscoroutinefunction(func),
    )


# Schema from the signature: one pydantic model per tool, strict, no extra keys, validated
# from JSON text (``model_validate_json``), so what passes is what the JSON Schema it prints
# allows (strict JSON mode takes arrays for tuples, integers for floats, nothing coerced from
# strings). Each field has an internal name and the parameter's name as its alias: a
# parameter may be called ``json`` or ``schema`` without shadowing pydantic's own attributes.


def _derived_schema(
    tool: str, params: list[inspect.Parameter]
) -> tuple[dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]:
    from typing import Annotated

    import pydantic

    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    for i, param in enumerate(params):
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(
                f"tool {tool}: parameter {param.name!r} must be a plain or keyword parameter "
                "(*args, **kwargs and positional-only ones take no JSON arguments)"
            )
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        internal = f"p{i}"
        names[internal] = param.name
        fields[internal] = (Annotated[annotation, pydantic.Field(alias=param.name)], default)
    config = pydantic.ConfigDict(extra="forbid", strict=True)
    try:
        model = pydantic.create_model(tool, __config__=config, **fields)
        input_schema = _strip_titles(model.model_json_schema())
    except (pydantic.PydanticUserError, TypeError) as exc:
        raise TypeError(f"tool {tool}: its type hints make no JSON Schema: {exc}") from None

    def check(args: dict[str, Any]) -> dict[str, Any]:
        try:
            text = json.dumps(args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"{tool}: the arguments are not JSON: {exc}") from None
        try:
            value = model.model_validate_json(text, strict=True)
        except pydantic.ValidationError as exc:
            raise ArgumentError(f"{tool}: {_describe_errors(exc.errors())}") from None
        return {names[key]: getattr(value, key) for key in names}

    return input_schema, check


def _describe_errors(errors: list[Any]) -> str:
    """Pydantic's errors as one line: ``a: Input should be a valid integer (got 'x'); ...``."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        text = f"{where}: {error['msg']}"
        if error["type"] not in ("missing", "extra_forbidden") and "input" in error:
            quoted = repr(error["input"])
            if len(quoted) > QUOTE_CHARS:
                quoted = quoted[:QUOTE_CHARS] + "..."
            text += f" (got {quoted})"
        parts.append(text)
    return "; ".join(parts)


#: Keys whose value maps names (not keywords) to schemas.
_SCHEMA_MAPS: Final = ("properties", "$defs", "definitions", "patternProperties")


def _strip_titles(schema: Any) -> Any:
    """``schema`` without the ``title``s pydantic adds to every model and field."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        elif key in ("default", "const", "enum", "examples"):
            out[key] = value
        else:
            out[key] = _strip_titles(value)
    return out


def _explicit_schema(
    tool: str, schema: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]:
    import jsonschema

    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError(f'tool {tool}: an explicit schema must be of "type": "object"')
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"tool {tool}: not a valid JSON Schema: {exc.message}") from None
    validator = jsonschema.Draft202012Validator(schema)

    def check(args: dict[str, Any]) -> dict[str, Any]:
        errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            described = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                for e in errors
            )
            raise ArgumentError(f"{tool}: {described}")
        return args

    return schema, check


def as_result(value: Any) -> dict[str, Any]:
    """A tool's return value as an edge result dict (see the module docstring).

    Raises:
        TypeError: ``value`` is a dict that is not JSON (its keys or values).
    """
    if isinstance(value, dict):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the tool returned a dict that is not JSON: {exc}") from None
        return value
    if isinstance(value, str):
        return {"output": value}
    if value is None:
        return {"output": ""}
    try:
        return {"output": json.dumps(value, allow_nan=False, ensure_ascii=False)}
    except (TypeError, ValueError):
        return {"output": str(value)}

