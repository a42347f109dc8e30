"""The tunnel's wire protocol, with no I/O (see docs/protocol.md).

Modules:
    frames   -- parse cloud → edge frames into typed events (never raises)
    build    -- build edge → cloud frames
    results  -- tool results: success, error, truncation
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
    MAX_FRAME_CHARS as MAX_FRAME_CHARS,
    ApprovedTools as ApprovedTools,
    Cancel as Cancel,
    Connected as Connected,
    Frame as Frame,
    Ping as Ping,
    ProtocolError as ProtocolError,
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
