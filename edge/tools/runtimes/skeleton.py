"""``edge tools new``: a declared tool that works at once, to edit into the one you want.

Each skeleton is a directory with a ``tool.toml``, the entry and a README
saying how to try it (``edge tools call NAME --args ...``):

``node``
    ``index.js``: reads the call on stdin, greets ``args.name`` and counts its words.
``native``
    ``main.sh``: a POSIX shell script (mode 0755) that greets its first
    argument (``argv = ["{name}"]``); ``main.c`` is the same tool in C, with
    the line that builds it in the README.
``wasm``
    ``module.wat``: a WASI module in text form (wasmtime compiles it as it
    is) that reads the call on stdin and answers how long it was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Final

from ...errors import ConfigError
from .manifest import NAME_PATTERN, RUNTIMES, TOOL_FILE


def write_skeleton(kind: str, name: str, parent: Path) -> Path:
    """Write a working ``kind`` tool named ``name`` into ``parent/name``; return that directory.

    Raises:
        ConfigError: an unknown kind, a name that is no tool name, or a
            directory that exists already (nothing is overwritten).
    """
    if kind not in RUNTIMES:
        raise ConfigError(f"unknown runtime {kind!r}; valid: {', '.join(RUNTIMES)}")
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{name!r} is no tool name: a letter, then up to 63 letters, digits, _ or -"
        )
    directory = parent.expanduser() / name
    if directory.exists() or directory.is_symlink():
        raise ConfigError(f"{directory} exists already; choose another name or remove it")
    files = _FILES[kind](name)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir()
    except FileExistsError:
        raise ConfigError(f"{directory} exists already; choose another name or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror}") from None
    try:
        for filename, (text, mode) in files.items():
            path = directory / filename
            path.write_text(text, encoding="utf-8")
            os.chmod(path, mode)
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise ConfigError(f"cannot write the tool into {directory}: {exc.strerror}") from None
    return directory


def _try_it(name: str, args: dict[str, str], answer: str) -> str:
    return (
        "Try it:\n\n"
        f"    edge tools list\n"
        f"    edge tools call {name} --args '{json.dumps(args)}'\n\n"
        f"answers\n\n    {answer}\n\n"
        "A tool reads the call as one JSON line on stdin (`{\"tool\", \"args\", \"callId\"}`)\n"
        "and prints its result as one JSON object on stdout: `{\"output\": \"...\"}`, or\n"
        "`{\"error\": \"...\"}` for a failed call. Log to stderr, never to stdout.\n"
        "Every key of tool.toml is in edge's docs/tools.md.\n"
    )


_NAME_SCHEMA: Final = """\
[args]
type = "object"
required = ["name"]
additionalProperties = false

[args.properties.name]
type = "string"
description = "who to greet"
# no control characters: the name goes into JSON text as it is
pattern = '^[^\\u0000-\\u001f]*$'
"""


def _node(name: str) -> dict[str, tuple[str, int]]:
    toml = f"""\
name = "{name}"
description = "Greet someone by name and count the words of the name (an example node tool)."
runtime = "node"
entry = "index.js"
timeout = 10

{_NAME_SCHEMA}"""
    script = f"""\
// {name}: a node tool for edge.
//
// edge runs `node index.js` in this directory for every call. The call comes
// as one JSON line on stdin: {{"tool": "{name}", "args": {{...}}, "callId": ...}}.
// The result goes to stdout as one JSON object: {{"output": "..."}} (other fields
// are passed on), or {{"error": "..."}}. Log with console.error, never console.log.
"use strict";

function answer(args) {{
  const name = args.name.trim() || "world";
  const words = name.split(/\\s+/).length;
  return {{ output: `Hello, ${{name}}!`, words }};
}}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {{ input += chunk; }});
process.stdin.on("end", () => {{
  let result;
  try {{
    result = answer(JSON.parse(input).args);
  }} catch (err) {{
    result = {{ error: String(err && err.message ? err.message : err) }};
  }}
  process.stdout.write(JSON.stringify(result) + "\\n");
}});
"""
    readme = f"""\
# {name}

A node tool for edge: `index.js` greets `args.name`.

{_try_it(name, {"name": "Ada Lovelace"}, '{"output": "Hello, Ada Lovelace!", "words": 2}')}"""
    return {TOOL_FILE: (toml, 0o644), "index.js": (script, 0o644), "README.md": (readme, 0o644)}


def _native(name: str) -> dict[str, tuple[str, int]]:
    toml = f"""\
name = "{name}"
description = "Greet someone by name (an example native tool)."
runtime = "native"
entry = "main.sh"
# The entry's arguments: {{name}} is the call's arg "name" (no shell, nothing re-split).
argv = ["{{name}}"]
timeout = 10

{_NAME_SCHEMA}"""
    script = f"""\
#!/bin/sh
# {name}: a native tool for edge.
#
# edge runs this file in its directory for every call, with the arguments of
# tool.toml's argv (here the arg "name" as $1); the call is also on stdin as one
# JSON line. The result goes to stdout as one JSON object: {{"output": "..."}},
# or {{"error": "..."}}. Log to stderr, never to stdout.
set -eu
name=${{1:-world}}
# JSON-escape backslashes and double quotes (the schema keeps control characters out).
escaped=$(printf '%s' "$name" | sed 's/\\\\/\\\\\\\\/g; s/"/\\\\"/g')
printf '{{"output": "Hello, %s!"}}\\n' "$escaped"
"""
    source = f"""\
/* {name}: the same native tool in C.
 *
 * Build it, then point tool.toml at the binary (entry = "{name}"):
 *
 *     cc -O2 -Wall -o {name} main.c
 *
 * argv[1] is the arg "name" (tool.toml's argv = ["{{name}}"]); the call is also
 * on stdin as one JSON line. The result is one JSON object on stdout. */
#include <stdio.h>

int main(int argc, char **argv) {{
    const char *name = argc > 1 ? argv[1] : "world";
    fputs("{{\\"output\\": \\"Hello, ", stdout);
    for (const char *p = name; *p; p++) {{
        if (*p == '"' || *p == '\\\\')
            putchar('\\\\');
        putchar(*p);
    }}
    fputs("!\\"}}\\n", stdout);
    return 0;
}}
"""
    readme = f"""\
# {name}

A native tool for edge: `main.sh` greets its first argument, the arg `name`
(tool.toml's `argv = ["{{name}}"]`).

{_try_it(name, {"name": "Ada"}, '{"output": "Hello, Ada!"}')}
The same tool in C is `main.c`. Build it and point `entry` at the binary:

    cc -O2 -Wall -o {name} main.c
    sed -i 's/^entry = .*/entry = "{name}"/' tool.toml
"""
    return {
        TOOL_FILE: (toml, 0o644),
        "main.sh": (script, 0o755),
        "main.c": (source, 0o644),
        "README.md": (readme, 0o644),
    }


#: The wasm skeleton's two pieces of answer, around the number of bytes it read.
_WASM_BEFORE: Final = '{"output": "Hello from wasm! The call was '
_WASM_AFTER: Final = ' bytes long."}\n'


def _wat_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _call_length(name: str) -> int:
    """How long the call ``edge tools call NAME`` sends is (``stdio.call_input``'s line)."""
    return len(json.dumps({"tool": name, "args": {}, "callId": None})) + 1


def _wasm(name: str) -> dict[str, tuple[str, int]]:
    toml = f"""\
name = "{name}"
description = "Say hello and how long the call was (an example wasm tool)."
runtime = "wasm"
entry = "module.wat"
timeout = 10
memory_mb = 16

[args]
type = "object"
"""
    wat = f"""\
;; {name}: a wasm tool for edge, a WASI module in text form.
;;
;; edge runs its _start for every call, sandboxed: it sees only stdin, stdout,
;; stderr and the directories tool.toml grants. The call comes on stdin as one
;; JSON line; the result goes to stdout as one JSON object. This one reads the
;; whole call and answers how many bytes it was. Any language that compiles to
;; wasm32-wasi works the same way (entry = "module.wasm").
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; 0..8: one iovec; 8..12: bytes read or written; 16..48: digits; 64..: the
  ;; answer's text; 1024..5120: where stdin is read to.
  (data (i32.const 64) "{_wat_string(_WASM_BEFORE)}")
  (data (i32.const 128) "{_wat_string(_WASM_AFTER)}")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; Read stdin to its end; return how many bytes it held.
  (func $read_all (result i32)
    (local $total i32)
    (local $n i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $more)))
    (local.get $total))

  ;; Write $n in decimal so that it ends at 48; return where it starts.
  (func $digits (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (i32.const 48))
    (loop $next
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $next (local.get $n)))
    (local.get $p))

  (func (export "_start")
    (local $start i32)
    (local.set $start (call $digits (call $read_all)))
    (call $write (i32.const 64) (i32.const {len(_WASM_BEFORE.encode())}))
    (call $write (local.get $start) (i32.sub (i32.const 48) (local.get $start)))
    (call $write (i32.const 128) (i32.const {len(_WASM_AFTER.encode())}))))
"""
    readme = f"""\
# {name}

A wasm tool for edge: `module.wat` (WASI, text form) reads the call on stdin and
answers how many bytes it was.

{_try_it(name, {}, _WASM_BEFORE + str(_call_length(name)) + _WASM_AFTER.rstrip())}
A wasm tool is sandboxed: it sees stdin, stdout, stderr and only the directories
listed as `[[grants.dirs]]` in tool.toml, within `memory_mb` of memory.
"""
    return {TOOL_FILE: (toml, 0o644), "module.wat": (wat, 0o644), "README.md": (readme, 0o644)}


_FILES: Final = {"node": _node, "native": _native, "wasm": _wasm}
