"""The dashboard: its routes and headers, the guard's origin and CSRF rules, the live levels,
and the page itself in a real headless Chromium (driven over the DevTools protocol).

The Chromium test saves ``.ci/artifacts/dashboard.png`` (a screenshot) and
``.ci/artifacts/dashboard.json`` (what it measured: how long a finished call took
to appear in the page, the meter's readings). Without Chromium it skips, saying
so, except under ``CI``, where it fails (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from edge.control.dashboard import PAGE, STATIC_FILES
from edge.control.guard import CSRF_REFUSED, ORIGIN_REFUSED, SITE_REFUSED, is_own_origin
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.captures import serve_captures
from edge.nurseries.tunnel import TunnelStatus

from ..conftest import CONNECT_WITHIN, child_processes, fast_tunnel, make_config, until
from .cdp import Page, find_chromium, open_chromium

ALLOWED: Final = "https://app.example"
EVIL: Final = "https://evil.example"
#: Seconds for a request or what follows it at once, on a busy machine (a bound on failure).
SOON: Final = 30.0
#: Seconds within which a finished call must show in the page (a bound on failure, not a
#: speed check: the figure measured goes to the artifact).
ROW_WITHIN: Final = 10.0
#: What a browser marks a load for another site's page with: (site, mode, destination).
EMBEDDED: Final = (
    ("cross-site", "no-cors", "script"),
    ("same-site", "no-cors", "image"),
    ("cross-site", "navigate", "iframe"),
)
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"


@pytest.fixture
async def daemon(nursery: trio.Nursery, workspace: Path) -> Daemon:
    cfg = make_config(workspace, control=("127.0.0.1", 0), allowed_origins=(ALLOWED,))
    return await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)


@pytest.fixture
async def client(daemon: Daemon) -> httpx.AsyncClient:
    assert daemon.control_url is not None
    async with httpx.AsyncClient(base_url=daemon.control_url, timeout=SOON) as c:
        yield c


def own_origin(daemon: Daemon, host: str = "127.0.0.1") -> str:
    assert daemon.control_url is not None
    return f"http://{host}:{daemon.control_url.rsplit(':', 1)[1].rstrip('/')}"


# -- the routes ------------------------------------------------------------------------


async def test_page_and_files_with_strict_headers(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    meta = re.search(r'<meta name="edge-csrf" content="([^"]+)">', page.text)
    assert meta is not None
    assert meta.group(1) == daemon.csrf_token
    assert "<script>" not in page.text
    assert " style=" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    kinds = {
        "dashboard.js": "text/javascript",
        "dashboard.css": "text/css",
        "favicon.svg": "image/svg+xml",
    }
    for name, kind in kinds.items():
        answer = await client.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(kind)
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    for name in ("dashboard.html", "nope.js", "..%2Fapp.py", "%2e%2e/guard.py", "../app.py"):
        assert (await client.get(f"/static/{name}")).status_code == 404, name
    assert (await client.post("/")).status_code == 405


async def test_another_origin_gets_nothing(client: httpx.AsyncClient, daemon: Daemon) -> None:
    port = int(own_origin(daemon).rsplit(":", 1)[1])
    foreign = [EVIL, "null", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}",
               f"http://evil.example:{port}"]  # fmt: skip
    for path in ("/", "/static/dashboard.js", "/health", "/events", "/calls", "/record/status"):
        for origin in foreign:
            answer = await client.get(path, headers={"origin": origin})
            assert answer.status_code == 403, (path, origin)
            assert answer.json() == {"error": ORIGIN_REFUSED}
            assert daemon.csrf_token not in answer.text
        # What a page elsewhere loads with <script>, <img> or <iframe>: no Origin, but marked.
        for site, mode, dest in EMBEDDED:
            marks = {"sec-fetch-site": site, "sec-fetch-mode": mode, "sec-fetch-dest": dest}
            answer = await client.get(path, headers=marks)
            assert answer.status_code == 403, (path, marks)
            assert answer.json() == {"error": SITE_REFUSED}
    # Following a link to the dashboard from another site is a top-level navigation: allowed
    # (the page then runs as its own origin; nothing else may frame or read it).
    link = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    link["sec-fetch-dest"] = "document"
    assert (await client.get("/", headers=link)).status_code == 200
    # A state change from another origin never reaches its route.
    post = await client.post(
        "/tunnel/disconnect", headers={"origin": EVIL, "x-edge-csrf": daemon.csrf_token}
    )
    assert post.status_code == 403


async def test_the_page_origin_needs_the_csrf_token_to_change_state(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    # The page's origin is "http://" + the Host it was reached at: a port forward (ssh -L)
    # shows another port than the one served, the same in both headers.
    port = own_origin(daemon).rsplit(":", 1)[1]
    pages = [(f"127.0.0.1:{port}", own_origin(daemon)),
             (f"localhost:{port}", own_origin(daemon, "localhost")),
             ("localhost:9999", "http://LocalHost:9999")]  # fmt: skip
    for host, origin in pages:
        same = {"host": host, "origin": origin, "sec-fetch-site": "same-origin"}
        assert (await client.get("/health", headers=same)).status_code == 200
        assert (await client.get("/record/status", headers=same)).status_code == 200
        for headers in (same, {**same, "x-edge-csrf": "wrong"}, {**same, "x-edge-csrf": ""}):
            answer = await client.post("/tunnel/disconnect", headers=headers)
            assert answer.status_code == 403
            assert answer.json() == {"error": CSRF_REFUSED}
            answer = await client.post("/record/stop", headers=headers)
            assert answer.status_code == 403
        token = {**same, "x-edge-csrf": daemon.csrf_token}
        assert (await client.post("/tunnel/disconnect", headers=token)).json() == {
            "status": "disconnected"
        }
        assert (await client.post("/record/stop", headers=token)).json() == {"stopped": []}
    # An Origin of another loopback port or name than the Host is another origin.
    for host in ("localhost:9999", "127.0.0.1:9999", "127.0.0.1", f"localhost:{port}"):
        origin = own_origin(daemon)
        answer = await client.get("/health", headers={"host": host, "origin": origin})
        assert answer.status_code == 403, (host, origin)
        assert answer.json() == {"error": ORIGIN_REFUSED}
    # The CLI sends no Origin and no token, as before; configured origins work as before.
    assert (await client.post("/record/stop")).status_code == 200
    answer = await client.post("/record/stop", headers={"origin": ALLOWED})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED


async def test_the_page_from_a_non_loopback_host_is_refused(client: httpx.AsyncClient) -> None:
    for path in ("/", "/static/dashboard.js"):
        answer = await client.get(path, headers={"host": "evil.example:8660"})
        assert answer.status_code == 403
        assert "Host not allowed" in answer.json()["error"]


def test_the_files_ship_as_package_data() -> None:
    """What the routes serve is in edge/control/static/ and in pyproject's package data, so
    a wheel (not only this checkout) has it."""
    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["edge.control"]
    for name in [PAGE, *STATIC_FILES]:
        assert (root / "edge" / "control" / "static" / name).is_file(), name
        assert any(fnmatch.fnmatch(f"static/{name}", p) for p in patterns), name


def test_own_origin_parsing() -> None:
    assert is_own_origin("http://127.0.0.1:8660", "127.0.0.1:8660")
    assert is_own_origin("http://localhost:8660", "localhost:8660")
    assert is_own_origin("http://LOCALHOST:8660", "localhost:8660")
    assert is_own_origin("http://[::1]:8660", "[::1]:8660")
    assert is_own_origin("http://127.0.0.1", "127.0.0.1")
    assert is_own_origin("http://localhost:9000", "localhost:9000")  # through ssh -L 9000:...
    assert not is_own_origin("http://127.0.0.1:8661", "127.0.0.1:8660")
    assert not is_own_origin("http://localhost:8660", "127.0.0.1:8660")
    assert not is_own_origin("http://127.0.0.1", "127.0.0.1:80")
    assert not is_own_origin("https://127.0.0.1:8660", "127.0.0.1:8660")
    assert not is_own_origin("http://evil.example:8660", "evil.example:8660")
    assert not is_own_origin("http://127.0.0.1:8660/x", "127.0.0.1:8660")
    assert not is_own_origin("http://u@127.0.0.1:8660", "127.0.0.1:8660")
    assert not is_own_origin("null", "127.0.0.1:8660")
    assert not is_own_origin("http://", "")
    assert not is_own_origin("http://127.0.0.1:8660", "")


# -- live levels -----------------------------------------------------------------------


async def test_levels_only_while_a_capture_runs_and_someone_listens(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    listening = False
    async with trio.open_nursery() as nursery:
        captures = await nursery.start(
            lambda task_status: serve_captures(
                lambda event: None,
                on_levels=events.append,
                listening=lambda: listening,
                task_status=task_status,
            )
        )
        listening = True
        await trio.sleep(0.3)
        assert events == []  # no capture runs: the ticker sleeps
        listening = False
        await captures.record_start("lv-1", "tone:440", asr=False)
        await captures.record_start("lv-2", "tone:880", asr=False)
        await trio.sleep(0.4)
        assert events == []  # nobody listens
        listening = True
        with trio.fail_after(SOON):
            await until(lambda: len(events) >= 2)
        last = events[-1]
        assert last["type"] == "capture_levels"
        assert sorted(c["chatId"] for c in last["captures"]) == ["lv-1", "lv-2"]
        for level in last["captures"]:
            assert level["source"] in ("tone:440", "tone:880")
            assert -12 < level["rmsDb"] < -6
            assert -9 < level["peakDb"] <= -5
        await captures.record_stop(None)
        seen = len(events)
        await trio.sleep(0.4)
        assert len(events) == seen  # no capture: no more levels
        nursery.cancel_scope.cancel()


# -- the page in a real browser --------------------------------------------------------


def _chromium_or_skip() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "no chromium on PATH (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    return binary


#: Expressions the test reads the page with.
LIVE: Final = "document.getElementById('live').dataset.live"
TUNNEL: Final = "document.getElementById('tunnel-state').textContent"
MESSAGE_HIDDEN: Final = "document.getElementById('message').hidden"
CARD: Final = "document.querySelector('.capture[data-chat=\"dash-1\"]')"
ROW: Final = "document.querySelector('#recent-calls tbody tr[data-id=\"dash-call-1\"]')"


async def _meter(page: Page) -> dict[str, Any]:
    """The dash-1 capture's meter as the page shows it ({} before it is there)."""
    value: dict[str, Any] | None = await page.evaluate(
        f"""(() => {{
            const card = {CARD};
            const m = card && card.querySelector('.meter');
            if (!m) return null;
            return {{rms: m.dataset.rms, peak: m.dataset.peak, updates: Number(m.dataset.updates),
                     cover: m.querySelector('.cover').style.width}};
        }})()"""
    )
    return value or {}


async def _start_daemon(
    nursery: trio.Nursery, workspace: Path, cloud: FakeCloud, port: int = 0
) -> Daemon:
    cfg = make_config(workspace, cloud, control=("127.0.0.1", port))
    daemon: Daemon = await nursery.start(Daemon(cfg, tunnel_options=fast_tunnel()).run)
    with trio.fail_after(CONNECT_WITHIN):
        await until(lambda: daemon.tunnel.status is TunnelStatus.CONNECTED)
    return daemon


@pytest.mark.slow
async def test_dashboard_in_chromium(
    nursery: trio.Nursery, cloud: FakeCloud, workspace: Path, tmp_path: Path
) -> None:
    binary = _chromium_or_skip()
    daemon = await _start_daemon(nursery, workspace, cloud)
    (workspace / "note.txt").write_text("the dashboard shows this call\n")
    assert daemon.control_url is not None
    url = daemon.control_url
    figures: dict[str, Any] = {}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = set(child_processes())
    async with (
        httpx.AsyncClient(base_url=url, timeout=SOON) as client,
        open_chromium(tmp_path / "profile", binary=binary, log_file=tmp_path / "chromium.log")
        as page,
    ):
        try:
            await _drive(page, client, daemon, cloud, figures)
            daemon = await _restart(page, nursery, daemon, workspace, cloud, figures)
        except BaseException:
            with trio.move_on_after(10), trio.CancelScope(shield=True):
                await page.screenshot(ARTIFACTS / "dashboard-failed.png")
            raise
        finally:
            (ARTIFACTS / "dashboard.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert set(child_processes()) - before == set()  # Chromium and its helpers are gone


async def _drive(
    page: Page, client: httpx.AsyncClient, daemon: Daemon, cloud: FakeCloud, figures: dict[str, Any]
) -> None:
    """Load the page, watch a meter, see a call, look from elsewhere, click Stop."""
    figures["chromium"] = (await page.send("Browser.getVersion")).get("product")
    t0 = time.monotonic()
    await page.navigate(f"{daemon.control_url}/")
    with trio.fail_after(SOON):
        await page.wait_for(f"{LIVE} === 'live'")
        await page.wait_for(f"{TUNNEL} === 'connected'")
        await until(lambda: len(daemon.events) > 0)  # the page's stream is subscribed
    figures["pageLiveMs"] = round((time.monotonic() - t0) * 1000)
    version = await page.evaluate("document.getElementById('version').textContent")
    assert version.startswith("0.1.0")
    badge = await page.evaluate("document.getElementById('tunnel-badge').dataset.state")
    assert badge == "connected"
    await page.evaluate("window.edgeNotReloaded = true")

    # A tone: capture shows a live meter that moves.
    body = {"chatId": "dash-1", "source": "tone:440", "asr": False}
    started = await client.post("/record/start", json=body)
    assert started.status_code == 201, started.text
    readings: list[dict[str, Any]] = []
    with trio.fail_after(SOON):
        while len({r.get("rms") for r in readings if r.get("rms")}) < 2:
            readings.append(await _meter(page))
            await trio.sleep(0.25)
    values = sorted({float(r["rms"]) for r in readings if r.get("rms")})
    figures["meterRmsDb"] = values
    assert all(-12 < v < -6 for v in values), values
    assert readings[-1]["updates"] >= 2
    assert readings[-1]["cover"] not in ("", "100%", "100.0%")  # the bar shows the level

    # A tool call from the cloud appears in the recent calls, pushed by /events.
    call = await cloud.start_call("file_read", {"path": "note.txt"}, call_id="dash-call-1")
    result = await cloud.result(call)
    assert "error" not in result, result
    with trio.fail_after(ROW_WITHIN):
        await page.wait_for(f"!!{ROW}")
    row = await page.evaluate(
        f"""(() => {{ const r = {ROW};
            return {{tool: r.dataset.tool, outcome: r.dataset.outcome,
                     shownAt: Number(r.dataset.shownAt),
                     cells: [...r.cells].map((c) => c.textContent)}}; }})()"""
    )
    assert (row["tool"], row["outcome"]) == ("file_read", "ok")
    assert await page.evaluate("window.edgeNotReloaded === true")  # no reload
    recent = (await client.get("/calls")).json()["recent"]
    record = next(c for c in recent if c["id"] == "dash-call-1")
    finished_ms = _epoch_ms(record["started"]) + record["seconds"] * 1000
    figures["callFinishedToRowMs"] = round(row["shownAt"] - finished_ms, 1)
    figures["callRow"] = row["cells"]

    figures["screenshotBytes"] = await page.screenshot(ARTIFACTS / "dashboard.png")
    dark = [{"name": "prefers-color-scheme", "value": "dark"}]
    await page.send("Emulation.setEmulatedMedia", features=dark)
    await page.screenshot(ARTIFACTS / "dashboard-dark.png")
    await page.send("Emulation.setEmulatedMedia", features=[])

    # Another origin gets nothing, the page included.
    for path in ("/", "/static/dashboard.js", "/events", "/calls"):
        answer = await client.get(path, headers={"origin": EVIL})
        assert answer.status_code == 403
        assert daemon.csrf_token not in answer.text

    # The Stop button stops the capture (a POST with the page's CSRF token).
    await page.evaluate(f"{CARD}.querySelector('button.stop').click()")
    with trio.fail_after(SOON):
        await until(lambda: len(daemon.captures) == 0)
        await page.wait_for(f"!{CARD}")
    assert await page.evaluate(MESSAGE_HIDDEN)


async def _restart(
    page: Page,
    nursery: trio.Nursery,
    daemon: Daemon,
    workspace: Path,
    cloud: FakeCloud,
    figures: dict[str, Any],
) -> Daemon:
    """Restart the daemon on the same port: the page says it is reconnecting, then reads
    everything again, the new run's CSRF token included (its Disconnect button works)."""
    assert daemon.control_url is not None
    port = int(daemon.control_url.rsplit(":", 1)[1])
    await daemon.stop()
    with trio.fail_after(SOON):
        await daemon.stopped.wait()
        await page.wait_for(f"{LIVE} === 'reconnecting'")
    t0 = time.monotonic()
    daemon = await _start_daemon(nursery, workspace, cloud, port)
    with trio.fail_after(SOON):
        await page.wait_for(f"{LIVE} === 'live'")
        await page.wait_for("document.querySelectorAll('#recent-calls tbody tr').length === 0")
        await page.wait_for(f"{TUNNEL} === 'connected'")
    figures["restartToLiveMs"] = round((time.monotonic() - t0) * 1000)
    await page.evaluate("document.getElementById('disconnect').click()")
    with trio.fail_after(SOON):
        await until(lambda: daemon.tunnel.status is TunnelStatus.DISCONNECTED)
        await page.wait_for(f"{TUNNEL} === 'disconnected'")
    assert await page.evaluate(MESSAGE_HIDDEN)
    return daemon


def _epoch_ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() * 1000
