"""``edge capture``: record (and transcribe) audio sources side by side.

This module reads the flags and builds one ``CaptureRequest`` per source; the live
terminal view that runs them is ``capture_view``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Final

from .common import (
    ParagraphFormatter,
    add_config_option,
    check_ws_url,
    fail,
    load,
    setup_logging,
)

#: Shown after the options in this command's --help.
EPILOG: Final = """\
Without --asr the audio is recorded locally only. Recordings are FLAC (WAV with
--format wav); while recording they are written as WAV a second at a time, so
even a killed capture leaves a readable file.

examples:
  edge capture --duplex
  edge capture --source mic --duration 60 --out ~/notes
  EDGE_TOKEN=... edge capture --duplex --asr wss://cloud.example/asr
  edge capture --source tone:440 --source tone:660 --asr ws://127.0.0.1:8765/asr
"""


def add_parser(subparsers: Any) -> None:
    cap = subparsers.add_parser(
        "capture",
        help="record (and transcribe) audio sources side by side, with a live view",
        allow_abbrev=False,
        description="Capture audio in the foreground: one recording (and one ASR stream) per "
        "source, a live level meter per source and transcript lines as they arrive. Ctrl-C "
        "stops every capture cleanly and prints their summaries.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    cap.add_argument(
        "--duplex", action="store_true", help="the microphone and the system's output together"
    )
    cap.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="SOURCE",
        dest="sources",
        help="mic, system, mic:DEVICE, system:SINK, pattern, tone:FREQ or file:PATH (repeatable)",
    )
    cap.add_argument(
        "--chat", metavar="ID", help="chat id prefix; each source adds -KIND (default capture)"
    )
    cap.add_argument(
        "--out", type=Path, metavar="DIR", help="where recordings go (default: the config's)"
    )
    cap.add_argument("--asr", metavar="URL", help="stream to this ASR WebSocket (ws:// or wss://)")
    cap.add_argument(
        "--token-file", type=Path, metavar="FILE", help="token for --asr (else $EDGE_TOKEN)"
    )
    cap.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    cap.add_argument("--format", choices=["flac", "wav"], default="flac", help="default flac")
    cap.add_argument("--rate", type=int, default=16000, metavar="HZ", help="default 16000")
    cap.add_argument("--channels", type=int, default=1, choices=[1, 2], help="default 1")
    cap.add_argument("--json", action="store_true", help="no live view; summaries as JSON")
    add_config_option(cap, help="TOML config")
    cap.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import trio

    from ..capture.capture import CaptureRequest
    from ..capture.sources import AudioFormat, parse_source
    from ..capture.uplink import AsrTarget
    from ..errors import CaptureError
    from .capture_view import run_captures

    setup_logging("WARNING")
    texts = (["mic", "system"] if args.duplex else []) + args.sources
    if not texts:
        return fail("nothing to capture: give --duplex or --source SOURCE (see --help)")
    if args.duration is not None and not 0 < args.duration < math.inf:
        # Checked here like --rate and the sources: one ``edge: error:`` line, exit 2.
        return fail("--duration must be positive (seconds)")
    config = load(args, token_file=args.token_file, no_control=True)
    asr = None
    if args.asr:
        check_ws_url("--asr", args.asr)
        asr = AsrTarget(args.asr, config.token)
    prefix = args.chat or "capture"
    out_dir = args.out.expanduser() if args.out else config.recordings_dir
    try:
        fmt = AudioFormat(args.rate, args.channels)
        specs = [parse_source(t) for t in texts]
        kinds = [s.kind for s in specs]
        requests = []
        for i, spec in enumerate(specs):
            suffix = spec.kind if kinds.count(spec.kind) == 1 else f"{spec.kind}{i + 1}"
            # CaptureRequest checks the chat id itself: a CaptureError if it is not one.
            requests.append(
                CaptureRequest(f"{prefix}-{suffix}", spec, fmt, out_dir, args.format, asr)
            )
        summaries = trio.run(
            lambda: run_captures(requests, duration=args.duration, as_json=args.json)
        )
    except CaptureError as exc:
        return fail(str(exc))
    return 1 if any(s.get("error") for s in summaries) else 0
