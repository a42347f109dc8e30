"""The plugin routes: every plugin's status, a reload, and a config change.

::

    GET  /plugins                 every plugin: status, runner PID, tools, restarts, last error
    POST /plugins/ID/reload       stop its runner, read its manifest again, start it
    POST /plugins/ID/config       {"values": {KEY: VALUE, ...}}: into its config.toml, pushed to it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BadRequest, ConfigError, PluginCallError
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route


class PluginsControl(Protocol):
    """The plugin runners as the control API drives them."""

    def info(self) -> list[dict[str, Any]]:
        """Every plugin's status, runner PID, tools, restarts and last error."""

    async def reload(self, plugin_id: str) -> dict[str, Any]:
        """Restart one plugin's runner with its manifest read again (KeyError: unknown id)."""

    async def set_config(self, plugin_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``values`` into the plugin's config and push it (KeyError, ConfigError)."""


def routes(target: PluginsControl) -> list[Route]:
    """The /plugins routes over ``target``."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    async def plugins(request: Request) -> Response:
        return json_reply({"plugins": target.info()})

    async def reload(request: Request) -> Response:
        plugin_id = request.path_params["id"]
        try:
            return json_reply(await target.reload(plugin_id))
        except KeyError:
            raise HTTPException(404, f"no plugin {plugin_id!r}") from None

    async def config(request: Request) -> Response:
        plugin_id = request.path_params["id"]
        body = await read_json(request)
        values = body.get("values")
        if not isinstance(values, dict) or not values:
            raise BadRequest('the body needs "values": an object of KEY: VALUE')
        try:
            return json_reply({"config": await target.set_config(plugin_id, values)})
        except KeyError:
            raise HTTPException(404, f"no plugin {plugin_id!r}") from None
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        except PluginCallError as exc:  # written to its file; the running plugin refused it
            message = f"written to its config.toml, but the running plugin did not take it: {exc}"
            return json_reply({"error": message}, status_code=409)

    return [
        Route("/plugins", plugins, methods=["GET"]),
        Route("/plugins/{id}/reload", reload, methods=["POST"]),
        Route("/plugins/{id}/config", config, methods=["POST"]),
    ]
