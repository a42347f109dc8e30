"""MCP results as edge tool results.

Plain functions over JSON-shaped dicts (an MCP ``CallToolResult`` dumped by
alias: ``content``, ``structuredContent``, ``isError``), so they are tested
without a server.

An edge result keeps everything the server said:

- ``output`` (or ``error`` when ``isError``): the text blocks, in order, in
  the server's chosen format (``plain``, ``markdown`` or ``json``);
- ``images`` / ``audio``: ``{"mimeType", "data"}`` with the base64 data as sent
  (a block over ``MAX_BLOB_CHARS`` is ``{"mimeType", "omitted": why}``);
- ``resources``: embedded resources (``uri``, ``mimeType``, ``text`` or ``blob``)
  and resource links (``uri``, ``name``);
- ``structured``: the structured content, untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..protocol import error_result

#: Base64 characters kept per image, audio or blob block (about 3 MB of data);
#: a larger block keeps its mime type and size and is marked ``omitted``.
MAX_BLOB_CHARS: Final = 4_000_000


def _blob(block: Mapping[str, Any], key: str) -> dict[str, Any]:
    out = {k: block[k] for k in ("uri", "name", "mimeType", "text") if k in block}
    data = block.get(key)
    if isinstance(data, str) and len(data) > MAX_BLOB_CHARS:
        out["omitted"] = f"{len(data)} base64 characters, over edge's limit of {MAX_BLOB_CHARS}"
    elif data is not None:
        out[key] = data
    return out


def _text_of(block: Mapping[str, Any]) -> str | None:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "resource":
        resource = block.get("resource") or {}
        if "text" in resource:
            return str(resource["text"])
    return None


def format_blocks(
    content: Iterable[Mapping[str, Any]], structured: Any, style: str = "plain"
) -> str:
    """The readable part of a result, as context for a model.

    ``plain``: text blocks joined by blank lines; ``markdown``: the same, with
    non-text blocks named (``![image](image/png)``) and structured content as a
    fenced JSON block; ``json``: ``{"content": [...], "structuredContent": ...}``.
    """
    blocks = list(content)
    if style == "json":
        out: dict[str, Any] = {"content": blocks}
        if structured is not None:
            out["structuredContent"] = structured
        return json.dumps(out, ensure_ascii=False, indent=2)
    parts: list[str] = []
    for block in blocks:
        text = _text_of(block)
        if text is not None:
            parts.append(text)
        elif style == "markdown":
            kind = block.get("type")
            if kind in ("image", "audio"):
                parts.append(f"![{kind}]({block.get('mimeType', 'application/octet-stream')})")
            elif kind == "resource_link":
                parts.append(f"[{block.get('name') or block.get('uri')}]({block.get('uri')})")
            elif kind == "resource":
                uri = (block.get("resource") or {}).get("uri")
                parts.append(f"[resource]({uri})")
    if not parts and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, indent=2)
        parts.append(f"```json\n{text}\n```" if style == "markdown" else text)
    elif style == "markdown" and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, indent=2)
        parts.append(f"```json\n{text}\n```")
    return "\n\n".join(parts)


def map_call_result(raw: Mapping[str, Any], style: str = "plain") -> dict[str, Any]:
    """An MCP ``CallToolResult`` (as JSON) → an edge tool result."""
    content = raw.get("content") or []
    if not isinstance(content, list):
        content = []
    content = [b for b in content if isinstance(b, dict)]
    structured = raw.get("structuredContent")
    text = format_blocks(content, structured, style)
    fields: dict[str, Any] = {}
    images = [_blob(b, "data") for b in content if b.get("type") == "image"]
    audio = [_blob(b, "data") for b in content if b.get("type") == "audio"]
    resources = []
    for b in content:
        if b.get("type") == "resource" and isinstance(b.get("resource"), dict):
            resources.append(_blob(b["resource"], "blob"))
        elif b.get("type") == "resource_link":
            resources.append({k: b[k] for k in ("uri", "name", "mimeType") if k in b})
    if images:
        fields["images"] = images
    if audio:
        fields["audio"] = audio
    if resources:
        fields["resources"] = resources
    if structured is not None:
        fields["structured"] = structured
    if raw.get("isError"):
        return error_result(text or "the tool reported an error without a message", **fields)
    return {"output": text, **fields}
