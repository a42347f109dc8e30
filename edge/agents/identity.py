"""This edge's identity among agents: a stable agent id, and a name people read.

The id is made once and kept in the store (``agent_identity``), so it stays the
same across runs and restarts; without a store (no state directory) each run
has a new one. The name is ``[agents] name`` from config.toml, else the
machine's host name.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who this edge is to other agents (the capability report's ``agent``)."""

    id: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def _new_id() -> str:
    return f"edge-{uuid.uuid4().hex}"


def _read_or_make(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM agent_identity WHERE key = 'id'").fetchone()
    if row is not None:
        return str(row[0])
    ident = _new_id()
    conn.execute("INSERT INTO agent_identity (key, value) VALUES ('id', ?)", (ident,))
    return ident


async def load_identity(store: Store | None, name: str | None = None) -> AgentIdentity:
    """The agent id kept in ``store`` (made there the first time), and the name.

    Args:
        store: the store; ``None``: a new id for this run only.
        name: the configured name; ``None``: the host name.
    """
    ident: str | None = None
    if store is not None:
        try:
            ident = await store.write(_read_or_make)
        except sqlite3.Error as exc:
            log.warning(
                "agents: cannot keep the agent id in the store (%s): a new one this run", exc
            )
    return AgentIdentity(ident or _new_id(), name or socket.gethostname())
