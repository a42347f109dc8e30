"""The CLI talks to the daemon on loopback directly: never through a proxy from the
environment, which would see the token ``edge tunnel connect`` sends and the local key."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from .test_cli import env, free_port, run_cli  # noqa: F401  (env is a fixture)


def test_the_cli_ignores_proxy_variables(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    seen: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        proxy.settimeout(0.2)
        url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = proxy.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        seen.append(conn.recv(65536))
                    except OSError:
                        seen.append(b"")

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            proxied = {**env, "HTTP_PROXY": url, "http_proxy": url, "ALL_PROXY": url,
                       "all_proxy": url, "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
            token = tmp_path / "tok"
            token.write_text("secret-proxy-token\n")
            token.chmod(0o600)
            nobody = f"127.0.0.1:{free_port()}"
            for args in (
                ("status", "--control", nobody),
                ("tunnel", "connect", "--url", "ws://127.0.0.1:9/tunnel", "--token-file",
                 str(token), "--control", nobody),
                ("stop", "--control", nobody),
                ("record", "status", "--control", nobody),
            ):  # fmt: skip
                done = run_cli(*args, env=proxied)
                assert done.returncode == 1, (args, done.stderr)
                assert "no edge daemon answers" in done.stderr
        finally:
            stop.set()
            thread.join(5)
    assert seen == []
