"""Updates inside a real daemon: ``GET``/``POST /update`` over its control API; the daemon lets
a call in flight finish, installs into a real venv, and stops with ``exitcodes.UPDATED``; an
update that fails in any way is a 409 and the daemon goes on; ``edge update`` finds the daemon
where the config tells ``edge run`` to listen."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from edge import exitcodes
from edge.daemon import Daemon
from edge.dev.cloud import FakeCloud
from edge.nurseries.updates import UpdateOptions
from edge.update.install import Installation, detect_installation

from ..conftest import CONNECT_WITHIN, TOKEN, fast_tunnel, make_config, until
from .kit import NEW, OLD, Site, StandIn, make_venv, version_of

#: Seconds for a request, a drain or an install on a busy machine (a bound on failure).
SOON: Final = 120.0


def _options(site: Site, tmp_path: Path, url: str | None) -> UpdateOptions:
    return UpdateOptions(
        manifest_url=url, public_key=site.public_key, auto=False, check=False,
        downloads=tmp_path / "updates",
    )  # fmt: skip


@pytest.fixture
def manifest_url(trust_site: Site, wheels: dict[str, Path]) -> str:
    versions = {NEW: trust_site.entry(wheels[NEW]), OLD: trust_site.entry(wheels[OLD])}
    return trust_site.publish("daemon", {"latest": NEW, "minimum": OLD, "versions": versions})


@pytest.fixture
async def cloud(nursery: trio.Nursery) -> FakeCloud:
    return await nursery.start(FakeCloud([TOKEN]).serve)


async def _daemon(
    nursery: trio.Nursery, config: Any, options: UpdateOptions, installation: Installation | None
) -> Daemon:
    daemon = Daemon(config, tunnel_options=fast_tunnel(), update_options=options,
                    installation=installation)  # fmt: skip
    started: Daemon = await nursery.start(daemon.run)
    return started


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=SOON) as c:
        yield c


@pytest.mark.slow
async def test_a_daemon_finishes_its_call_installs_and_stops_with_updated(
    nursery: trio.Nursery,
    cloud: FakeCloud,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    workspace: Path,
    tmp_path: Path,
    client: httpx.AsyncClient,
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    installation = detect_installation(prefix=venv, python=venv / "bin" / "python", path=[])
    config = make_config(workspace, cloud, control=("127.0.0.1", 0), update_manifest=manifest_url)
    daemon = await _daemon(nursery, config, _options(trust_site, tmp_path, manifest_url),
                           installation)  # fmt: skip
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    await cloud.approve_tools(["terminal"])
    base = daemon.control_url
    info = (await client.get(f"{base}/update")).json()
    assert info["method"] == "venv"
    assert info["prefix"] == str(venv)
    assert info["installed"] == OLD
    assert info["manifestUrl"] == manifest_url

    with trio.fail_after(SOON):
        call = await cloud.start_call("terminal", {"command": "sleep 1; echo finished"})
        await until(lambda: daemon.workers.in_flight > 0)
        reply = await client.post(f"{base}/update", json={})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"status": "installed", "version": NEW, "previous": OLD,
                                "restarting": False}  # fmt: skip
        # the call was let finish (not cancelled) before the install
        assert await cloud.result(call) == {"output": "finished\n", "exit_code": 0}
        await daemon.stopped.wait()
    assert daemon.exit_code == exitcodes.UPDATED
    assert version_of(venv / "bin" / "edge") == f"edge {NEW}"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"to": 2}, '"to" must be a version'),
        ({"now": "yes"}, '"now" must be true or false'),
        ({"force": True}, "unknown key 'force'"),
    ],
)
async def test_a_bad_update_request_is_400(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    workspace: Path,
    tmp_path: Path,
    client: httpx.AsyncClient,
    body: dict[str, Any],
    said: str,
) -> None:
    config = make_config(workspace, control=("127.0.0.1", 0), update_manifest=manifest_url)
    daemon = await _daemon(nursery, config, _options(trust_site, tmp_path, manifest_url), None)
    reply = await client.post(f"{daemon.control_url}/update", json=body)
    assert reply.status_code == 400
    assert said in reply.json()["error"]
    await daemon.stop()


async def test_a_daemon_of_an_editable_checkout_refuses_and_keeps_running(
    nursery: trio.Nursery,
    cloud: FakeCloud,
    trust_site: Site,
    manifest_url: str,
    workspace: Path,
    tmp_path: Path,
    client: httpx.AsyncClient,
) -> None:
    cloud.versions_url = manifest_url  # no URL in the config: the one the cloud names
    config = make_config(workspace, cloud, control=("127.0.0.1", 0))
    daemon = await _daemon(nursery, config, _options(trust_site, tmp_path, None), None)
    with trio.fail_after(CONNECT_WITHIN):
        await cloud.wait_connected()
    base = daemon.control_url
    with trio.fail_after(SOON):
        await until(lambda: daemon.cloud_versions_url is not None)  # `connected` was read
        info = (await client.get(f"{base}/update")).json()
        assert info["manifestUrl"] == manifest_url
        assert info["method"] == "editable"
        assert "git -C" in info["problem"]
        reply = await client.post(f"{base}/update", json={"now": True})
    assert reply.status_code == 409
    assert "is an editable install of the checkout" in reply.json()["error"]
    assert not daemon.stopped.is_set()
    assert (await client.get(f"{base}/health")).json()["status"] == "ok"
    await daemon.stop()


@pytest.mark.slow
async def test_edge_update_asks_the_daemon_of_its_own_installation(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    workspace: Path,
    tmp_path: Path,
    user_env: dict[str, str],
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    installation = detect_installation(prefix=venv, python=venv / "bin" / "python", path=[])
    config = make_config(workspace, control=("127.0.0.1", 0), update_manifest=manifest_url)
    daemon = await _daemon(nursery, config, _options(trust_site, tmp_path, manifest_url),
                           installation)  # fmt: skip
    assert daemon.control_url is not None
    control = daemon.control_url.removeprefix("http://")
    cli_config = trust_site.config(tmp_path / "config.toml", "https://unused.example/v.json")
    argv = [str(venv / "bin" / "edge"), "update", "--now", "--config", str(cli_config),
            "--control", control]  # fmt: skip
    with trio.fail_after(SOON):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      env=user_env, check=False)  # fmt: skip
        await daemon.stopped.wait()
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert f"the daemon on {control} updates itself (it stops its calls and captures" in err
    assert f"edge {NEW} installed (was {OLD}); the daemon stopped: start it again" in out
    assert daemon.exit_code == exitcodes.UPDATED
    assert version_of(venv / "bin" / "edge") == f"edge {NEW}"


async def test_an_update_that_cannot_write_its_downloads_is_a_409_and_the_daemon_goes_on(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    workspace: Path,
    tmp_path: Path,
    client: httpx.AsyncClient,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    downloads = tmp_path / "a-file" / "updates"
    options = UpdateOptions(manifest_url=manifest_url, public_key=trust_site.public_key,
                            auto=False, check=False, downloads=downloads)  # fmt: skip
    stand_in = StandIn.make(tmp_path / "env")
    config = make_config(workspace, control=("127.0.0.1", 0), update_manifest=manifest_url)
    daemon = await _daemon(nursery, config, options, stand_in.installation())
    base = daemon.control_url
    with trio.fail_after(SOON):
        reply = await client.post(f"{base}/update", json={})
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"].startswith(f"cannot write {downloads}: ")
    assert not stand_in.started
    assert not daemon.stopped.is_set()
    assert (await client.get(f"{base}/health")).json()["status"] == "ok"
    assert (await client.get(f"{base}/update")).json()["lastError"] == reply.json()["error"]
    await daemon.stop()


async def test_edge_update_finds_the_daemon_where_the_config_says_it_listens(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    workspace: Path,
    tmp_path: Path,
    user_env: dict[str, str],
) -> None:
    """``edge run --config C`` listens on C's ``[control] listen``: ``edge update --config C``
    must ask that daemon, not install under it. Here both are this editable checkout, whose
    daemon refuses (409): exit 1, in the daemon's words."""
    config = make_config(workspace, control=("127.0.0.1", 0), update_manifest=manifest_url)
    daemon = await _daemon(nursery, config, _options(trust_site, tmp_path, manifest_url), None)
    assert daemon.control_url is not None
    control = daemon.control_url.removeprefix("http://")
    cli_config = trust_site.config(tmp_path / "config.toml", manifest_url)
    cli_config.write_text(f'[control]\nlisten = "{control}"\n' + cli_config.read_text())
    argv = [sys.executable, "-m", "edge", "update", "--config", str(cli_config)]  # no --control
    with trio.fail_after(SOON):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      env=user_env, check=False)  # fmt: skip
    err = done.stderr.decode()
    assert f"the daemon on {control} updates itself" in err
    assert "is an editable install of the checkout" in err
    assert done.returncode == 1, err  # refused by the daemon (409): not a usage error
    assert not daemon.stopped.is_set()
    await daemon.stop()
