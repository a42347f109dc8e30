"""``edge record start|stop|status``: captures in the running daemon, from the terminal.

The same operations as the control API's ``/record/*`` routes (what the cloud's
web page drives): the daemon records, transcribes and keeps the files; the
command only asks. ``edge capture`` is the other way: a capture in the
foreground, without a daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Final

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_control_option,
    check_ws_url,
    control_get,
    control_post,
    fail,
    plural,
)

#: Seconds between refreshes of ``edge record status --watch``.
WATCH_EVERY: Final = 0.25
#: Seconds a stop may take: the file is encoded and the ASR's last transcripts awaited.
STOP_TIMEOUT: Final = 60.0
#: How many ``-N`` suffixes a default chat id tries when one started in the same second.
DEFAULT_CHAT_TRIES: Final = 20

#: Shown after the options in this command's --help.
EPILOG: Final = """\
examples:
  edge record start --source mic                  a chat id is made up and printed
  edge record start --source system --chat call-7 --no-asr
  edge record status --watch                      live levels; Ctrl-C ends the view
  edge record stop --chat call-7                  without --chat: every capture

Sources: mic, mic:DEVICE, system, system:SINK, pattern, tone:FREQ, file:PATH.
Without --asr or --no-asr, a capture streams to the ASR endpoint the cloud named
(while the tunnel holds a token), else it records locally only.
"""


def add_parser(subparsers: Any) -> None:
    record = subparsers.add_parser(
        "record",
        help="start, stop or watch captures in the running daemon",
        description="Drive the running daemon's captures (the /record routes of its "
        "control API); each capture is named by a chat id.",
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = record.add_subparsers(dest="record_command", metavar="ACTION", required=True)

    start = actions.add_parser("start", help="start recording a source")
    start.add_argument("--source", required=True, metavar="SRC", help="mic, system, tone:440, ...")
    start.add_argument(
        "--chat", metavar="ID", help="the capture's chat id (default cli-YYYYMMDD-HHMMSS)"
    )
    asr = start.add_mutually_exclusive_group()
    asr.add_argument("--asr", metavar="URL", help="stream to this ASR WebSocket (ws:// or wss://)")
    asr.add_argument("--no-asr", action="store_true", help="record locally only")
    start.add_argument("--format", choices=["flac", "wav"], help="the file's format (default flac)")
    add_control_option(start)
    start.set_defaults(handler=handle_start)

    stop = actions.add_parser("stop", help="stop one capture (--chat) or all of them")
    stop.add_argument("--chat", metavar="ID", help="the capture to stop (default: every capture)")
    add_control_option(stop)
    stop.set_defaults(handler=handle_stop)

    status = actions.add_parser("status", help="every live capture: level, time, drops, ASR")
    status.add_argument(
        "--watch", action="store_true", help="a live view, refreshed 4 times a second"
    )
    status.add_argument("--json", action="store_true", help="print the JSON (a line per refresh)")
    add_control_option(status)
    status.set_defaults(handler=handle_status)


def _no_daemon(exc: ControlUnreachable) -> int:
    return fail(f"{exc}; start one with: edge run", code=1)


def _daemon_error(answer: Any) -> int:
    message = answer.get("error", answer) if isinstance(answer, dict) else answer
    return fail(str(message) or "the daemon answered with an error and no message", code=1)


def default_chat_id(attempt: int = 1) -> str:
    """``cli-YYYYMMDD-HHMMSS`` (local time), ``-N`` added from the second attempt on."""
    import time

    stamp = time.strftime("cli-%Y%m%d-%H%M%S")
    return stamp if attempt == 1 else f"{stamp}-{attempt}"


def handle_start(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"source": args.source}
    if args.asr:
        check_ws_url("--asr", args.asr)
        body["asr"] = args.asr
    elif args.no_asr:
        body["asr"] = False
    if args.format:
        body["format"] = args.format
    tries = 1 if args.chat else DEFAULT_CHAT_TRIES
    for attempt in range(1, tries + 1):
        body["chatId"] = args.chat or default_chat_id(attempt)
        try:
            status, answer = control_post(args.control, "/record/start", body, timeout=30.0)
        except ControlUnreachable as exc:
            return _no_daemon(exc)
        error = answer.get("error") if isinstance(answer, dict) else answer
        taken = status == 409 and "already recording" in str(error)
        if not taken or args.chat:  # a made-up id that records already: the next one
            break
    if status != 201:
        return _daemon_error(answer)
    try:
        line = start_line(answer)
    except (KeyError, TypeError, AttributeError, ValueError):  # an answer of another shape
        return fail(f"what answers on {args.control} is not an edge daemon", code=1)
    print(line)
    return 0


def start_line(status: dict[str, Any]) -> str:
    """What ``edge record start`` prints: the chat id, the source, the file, the ASR."""
    file = status.get("file") or "(not recorded)"
    if file.endswith(".partial.wav"):
        file += " (FLAC once stopped)"
    asr = status.get("asr")
    link = f"; transcribed by {asr['url']}" if asr else "; local only, no ASR"
    return f"recording chat {status['chatId']}: {status['source']} into {file}{link}"


def handle_stop(args: argparse.Namespace) -> int:
    path = "/record/stop"
    if args.chat:
        from urllib.parse import quote

        path += f"?chatId={quote(args.chat, safe='')}"
    try:
        status, answer = control_post(args.control, path, timeout=STOP_TIMEOUT)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    if status != 200:
        return _daemon_error(answer)
    try:
        stopped = answer.get("stopped") or []
        lines = [stop_line(summary) for summary in stopped] or ["nothing was recording"]
    except (KeyError, TypeError, AttributeError, ValueError):  # an answer of another shape
        return fail(f"what answers on {args.control} is not an edge daemon", code=1)
    print("\n".join(lines))
    return 0


def stop_line(summary: dict[str, Any]) -> str:
    """What ``edge record stop`` prints for one capture: file, seconds, transcript count."""
    line = (
        f"stopped chat {summary['chatId']} ({summary['source']}): "
        f"{summary['seconds']:.1f} s into {summary.get('file') or '(not recorded)'}, "
        f"{plural(len(summary.get('transcript') or []), 'transcript segment')}"
    )
    asr = summary.get("asr")
    if asr is not None and not asr.get("complete"):
        line += f" (transcript incomplete: {asr.get('lastError') or 'the ASR did not finish'})"
    if summary.get("error"):
        line += f"; stopped early: {summary['error']}"
    return line


def capture_line(status: dict[str, Any]) -> str:
    """One live capture: its chat id, then the level meter line of ``edge capture``."""
    from .capture_view import status_line

    return f"{status['chatId']:<24} {status_line(status)}"


def _brief(captures: list[dict[str, Any]]) -> str:
    """Every capture's level on one line, for a refresh that is not on a terminal."""
    import time

    if not captures:
        return f"{time.strftime('%H:%M:%S')} no capture is recording"
    parts = []
    for c in captures:
        level = c.get("level") or {}
        peak, rms = level.get("peakDb"), level.get("rmsDb")
        db = "-inf" if peak is None else f"{peak:.1f}"
        mean = "-inf" if rms is None else f"{rms:.1f}"
        parts.append(f"{c['chatId']} peak {db} dB rms {mean} dB {c['seconds']:.1f} s")
    return f"{time.strftime('%H:%M:%S')} " + " | ".join(parts)


def handle_status(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch(args.control, as_json=args.json)
    try:
        (answer,) = control_get(args.control, "/record/status", timeout=5.0)
    except ControlUnreachable as exc:
        return _no_daemon(exc)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return fail(f"what answers on {args.control} is not an edge daemon", code=1)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    captures = answer.get("captures") or []
    if not captures:
        print("no capture is recording (start one with: edge record start --source SRC)")
    for status in captures:
        print(capture_line(status))
    return 0


def _watch(control: str, *, as_json: bool) -> int:
    """Poll GET /record/status until Ctrl-C (exit 0): redrawn in place on a terminal,
    else one line per refresh."""
    import shutil
    import time

    from .common import ControlClient

    out = sys.stdout
    tty = out.isatty() and not as_json
    drawn = 0
    answered = False
    try:
        with ControlClient(control, timeout=5.0) as client:
            while True:
                try:
                    captures = client.get_json("/record/status").get("captures") or []
                except (ControlUnreachable, ValueError, AttributeError) as exc:
                    cause = exc.__cause__ if isinstance(exc, ControlUnreachable) else exc
                    why = type(cause if cause is not None else exc).__name__
                    if not answered:
                        return fail(f"no edge daemon answers on {control} ({why})", code=1)
                    return fail(f"the daemon on {control} stopped answering ({why})", code=1)
                answered = True
                if as_json:
                    out.write(json.dumps({"captures": captures}) + "\n")
                elif tty:
                    lines = [capture_line(c) for c in captures] or [
                        "no capture is recording (Ctrl-C ends this view)"
                    ]
                    width = shutil.get_terminal_size().columns - 1  # a wrapped line breaks
                    if drawn:  # the redraw, which moves up one row per line
                        out.write(f"\x1b[{drawn}F\x1b[J")
                    out.write("".join(line[:width] + "\n" for line in lines))
                    drawn = len(lines)
                else:
                    out.write(_brief(captures) + "\n")
                out.flush()
                time.sleep(WATCH_EVERY)
    except KeyboardInterrupt:
        return 0
    # A reader gone (`| head`) is common.call_handler's: exit 141, quietly.
