"""The wire protocols as plain code, with no I/O and no trio (see docs/protocol.md).

Modules:
    frames   -- parse cloud → edge tunnel frames into typed events (never raises)
    build    -- build edge → cloud tunnel frames
    results  -- tool results: success, error, truncation
    asr      -- the speech-recognition uplink's messages, both ways
    openai   -- OpenAI function calling: tools, calls and tool messages; streamed chat turns
    sse      -- server-sent events (text/event-stream) decoded from bytes in any pieces
    strict   -- JSON decoding that refuses NaN and the infinities; whether a value encodes
    rpc      -- the plugin-runner RPC: length-prefixed msgpack envelopes, the decoder
    a2a      -- agent collaboration: task states and events, the agents extension's frames
    schedule -- the scheduler's tasks as the cloud and the control API send them, checked;
                the schedule_* answers and the schedule_run notification
"""

from __future__ import annotations

from .build import (
    PROTOCOL_VERSION as PROTOCOL_VERSION,
    capability_report as capability_report,
    encode as encode,
    invalid_request as invalid_request,
    pong as pong,
    progress_notification as progress_notification,
    tool_response as tool_response,
)
from .frames import (
    EXTENSION_METHODS as EXTENSION_METHODS,
    MAX_FRAME_CHARS as MAX_FRAME_CHARS,
    ApprovedTools as ApprovedTools,
    Cancel as Cancel,
    Connected as Connected,
    Frame as Frame,
    Ping as Ping,
    ProtocolError as ProtocolError,
    Request as Request,
    Response as Response,
    ToolCall as ToolCall,
    Unknown as Unknown,
    parse_frame as parse_frame,
)
from .results import (
    MAX_OUTPUT_CHARS as MAX_OUTPUT_CHARS,
    error_result as error_result,
    ok_result as ok_result,
    truncate_result as truncate_result,
)

__all__ = [
    "EXTENSION_METHODS",
    "MAX_FRAME_CHARS",
    "MAX_OUTPUT_CHARS",
    "PROTOCOL_VERSION",
    "ApprovedTools",
    "Cancel",
    "Connected",
    "Frame",
    "Ping",
    "ProtocolError",
    "Request",
    "Response",
    "ToolCall",
    "Unknown",
    "capability_report",
    "encode",
    "error_result",
    "invalid_request",
    "ok_result",
    "parse_frame",
    "pong",
    "progress_notification",
    "tool_response",
    "truncate_result",
]
