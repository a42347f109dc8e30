"""What the CLI does without being told: find the daemon where the config says it
listens, and end quietly when its reader goes away."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from .conftest import edge_cmd, start_edge
from .test_cli import env, free_port, run_cli  # noqa: F401  (env is a fixture)


async def test_commands_find_the_daemon_at_the_configs_address(
    nursery: trio.Nursery, env: dict[str, str], workspace: Path  # noqa: F811
) -> None:
    port = free_port()
    config = Path(env["XDG_CONFIG_HOME"]) / "edge" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[control]\nlisten = "127.0.0.1:{port}"\n')
    edge = await start_edge(nursery, "--workspace", str(workspace), env=env)
    with trio.fail_after(30):
        await edge.wait_for_log(f"control API on http://127.0.0.1:{port}")
    for args in (("status",), ("tunnel", "status"), ("record", "status")):
        done = await trio.to_thread.run_sync(lambda a=args: run_cli(*a, env=env))
        assert done.returncode == 0, (args, done.stderr)
    stopped = await trio.to_thread.run_sync(lambda: run_cli("stop", env=env))
    assert stopped.returncode == 0, stopped.stderr
    with trio.fail_after(30):
        assert await edge.proc.wait() == 0


def test_a_closed_stdout_ends_the_command_quietly(env: dict[str, str]) -> None:  # noqa: F811
    with subprocess.Popen(
        edge_cmd("config", "show"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # its reader is gone before it writes, as `| head -0` would be
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=30) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "ignored" not in stderr
