"""The daemon's updates task (``serve_updates``): the scheduled check, the announcement, the
automatic update of a service, an update on request, ``abort`` and ``resume``; against the
https site, real venvs, and (where an installer must be held, fail, or install nothing) the
stand-in environment of ``kit.StandIn``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from edge.config import Config
from edge.errors import UpdateError
from edge.nurseries.updates import STOPPING, UpdateOptions, Updates, serve_updates
from edge.update.install import Installation, detect_installation

from ..conftest import until
from .kit import NEW, OLD, Site, StandIn, make_venv, snapshot, version_of

#: Seconds for a check, a drain or an install on a busy machine (a bound on failure).
SOON: Final = 120.0


def _installation(venv: Path) -> Installation:
    return detect_installation(prefix=venv, python=venv / "bin" / "python", path=[])


class Recorder:
    """The daemon's side of the task: what it was asked to drain, installed, published."""

    def __init__(self) -> None:
        self.drains: list[bool] = []
        self.resumes = 0
        self.installed: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.release = trio.Event()
        self.release.set()
        #: What a drain raises, if anything.
        self.drain_error: Exception | None = None

    async def drain(self, now: bool) -> None:
        self.drains.append(now)
        await self.release.wait()
        if self.drain_error is not None:
            raise self.drain_error

    def resume(self) -> None:
        self.resumes += 1

    def on_installed(self, version: str) -> None:
        self.installed.append(version)

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)


async def _start(
    nursery: trio.Nursery,
    site: Site,
    url: str,
    installation: Installation,
    recorder: Recorder,
    tmp_path: Path,
    **options: Any,
) -> Updates:
    settings: dict[str, Any] = {
        "manifest_url": None,
        "public_key": site.public_key,
        "auto": False,
        "check": True,
        "first_check": 0.0,
        "interval": 3600.0,
        "downloads": tmp_path / "updates",
        **options,
    }
    updates: Updates = await nursery.start(
        lambda task_status: serve_updates(
            UpdateOptions(**settings),
            manifest_url=lambda: url,
            drain=recorder.drain,
            resume=recorder.resume,
            on_installed=recorder.on_installed,
            publish=recorder.publish,
            installation=installation,
            task_status=task_status,
        )
    )
    return updates


@pytest.fixture
def manifest_url(trust_site: Site, wheels: dict[str, Path]) -> str:
    return trust_site.publish(
        "daily",
        {"latest": NEW, "minimum": OLD, "versions": {NEW: trust_site.entry(wheels[NEW])}},
    )


async def test_a_new_version_is_announced_once_and_not_installed_without_auto(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.nurseries.updates")
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    before = snapshot(venv)
    recorder = Recorder()
    updates = await _start(
        nursery, trust_site, manifest_url, _installation(venv), recorder, tmp_path, interval=0.05
    )
    with trio.fail_after(SOON):
        await until(lambda: recorder.events)
        for _ in range(2):  # a check begun after the next one began: that one is over
            started = updates.info()["lastCheck"]
            await until(lambda started=started: updates.info()["lastCheck"] != started)
    assert recorder.events == [
        {"type": "update_available", "current": OLD, "latest": NEW, "minimum": OLD,
         "required": False},
    ]  # fmt: skip
    said = [r.message for r in caplog.records if r.message.startswith("update available")]
    assert said == [f"update available: edge {NEW} ({OLD} → {NEW})"]
    info = updates.info()
    assert info["installed"] == OLD
    assert info["latest"] == NEW
    assert info["available"] is True
    assert info["method"] == "venv"
    assert info["prefix"] == str(venv)
    assert info["lastError"] is None
    assert recorder.drains == []
    assert recorder.installed == []
    assert snapshot(venv) == before


async def test_auto_does_not_install_in_an_interactive_daemon(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    recorder = Recorder()
    await _start(nursery, trust_site, manifest_url, _installation(venv), recorder, tmp_path,
                 auto=True, as_service=False)  # fmt: skip
    with trio.fail_after(SOON):
        await until(lambda: recorder.events)
        await until(lambda: "installs by itself only when run as a service" in caplog.text)
    assert recorder.drains == []
    assert version_of(venv / "bin" / "edge") == f"edge {OLD}"


async def test_a_service_with_auto_drains_installs_and_reports(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    tmp_path: Path,
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    recorder = Recorder()
    await _start(nursery, trust_site, manifest_url, _installation(venv), recorder, tmp_path,
                 auto=True, as_service=True)  # fmt: skip
    with trio.fail_after(SOON):
        await until(lambda: recorder.installed)
    assert recorder.drains == [False]
    assert recorder.installed == [NEW]
    assert recorder.resumes == 0  # installed: the daemon stops, it takes no work again
    assert [e["type"] for e in recorder.events] == ["update_available", "update_installed"]
    assert version_of(venv / "bin" / "edge") == f"edge {NEW}"
    assert sorted(p.name for p in (tmp_path / "updates").iterdir()) == [wheels[NEW].name]


async def test_an_update_cancelled_while_draining_installs_nothing_and_one_at_a_time(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    wheels: dict[str, Path],
    deps: Path,
    tmp_path: Path,
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    before = snapshot(venv)
    recorder = Recorder()
    recorder.release = trio.Event()  # calls that never finish
    updates = await _start(nursery, trust_site, manifest_url, _installation(venv), recorder,
                           tmp_path, check=False)  # fmt: skip
    request = trio.CancelScope()
    nursery.start_soon(_update_in, request, updates)
    with trio.fail_after(SOON):
        await until(lambda: recorder.drains)
    assert updates.info()["updating"] is True
    with pytest.raises(UpdateError, match="an update is already under way"):
        await updates.update(None, False, True)
    request.cancel()
    with trio.fail_after(SOON):
        await until(lambda: not updates.info()["updating"])
    assert recorder.installed == []
    assert recorder.resumes == 1  # drained, not installed: the daemon takes work again
    assert snapshot(venv) == before  # downloaded and verified, never installed


async def _update_in(scope: trio.CancelScope, updates: Updates) -> None:
    with scope:
        await updates.update(None, False, False)


async def test_an_editable_checkout_is_refused_before_draining(
    nursery: trio.Nursery, trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    updates = await _start(nursery, trust_site, manifest_url, detect_installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    with pytest.raises(UpdateError, match="is an editable install of the checkout"):
        await updates.update(None, False, False)
    assert recorder.drains == []
    assert "editable install" in str(updates.info()["lastError"])
    assert updates.info()["method"] == "editable"


async def test_a_refused_check_is_remembered_as_the_last_error(
    nursery: trio.Nursery, trust_site: Site, wheels: dict[str, Path], deps: Path, tmp_path: Path
) -> None:
    venv = make_venv(tmp_path / "venv", wheels[OLD], deps)
    recorder = Recorder()
    url = trust_site.publish("nokey", {"latest": NEW, "versions": {}})  # latest not listed
    updates = await _start(nursery, trust_site, url, _installation(venv), recorder, tmp_path)
    with trio.fail_after(SOON):
        await until(lambda: updates.info()["lastError"])
    assert "latest 0.2.0 is not in its versions" in updates.info()["lastError"]
    assert recorder.events == []


# --- abort, resume, and errors that are not UpdateErrors --------------------------------


async def _outcome(updates: Updates, box: list[Any]) -> None:
    """``updates.update()``, its answer or its error into ``box``."""
    try:
        box.append(await updates.update(None, False, False))
    except UpdateError as exc:
        box.append(exc)


async def test_abort_while_draining_installs_nothing_gives_the_work_back_and_refuses_more(
    nursery: trio.Nursery, trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    recorder = Recorder()
    recorder.release = trio.Event()  # calls that never finish
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    box: list[Any] = []
    nursery.start_soon(_outcome, updates, box)
    with trio.fail_after(SOON):
        await until(lambda: recorder.drains)
        updates.abort()  # what the daemon's stop() does first
        await until(lambda: box)
    assert isinstance(box[0], UpdateError)
    assert str(box[0]) == STOPPING == "edge is stopping: the update was not installed"
    assert recorder.resumes == 1
    assert recorder.installed == []
    assert not stand_in.started
    assert list((tmp_path / "updates").iterdir()) == []  # the wheel, its requirements: gone
    assert updates.info()["updating"] is False
    assert updates.info()["lastError"] == STOPPING
    with pytest.raises(UpdateError, match=STOPPING):
        await updates.update(None, False, True)
    assert recorder.drains == [False]  # the later one did not even begin
    assert recorder.resumes == 1


async def test_abort_while_the_installer_runs_lets_it_finish(
    nursery: trio.Nursery, trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    stand_in.file("hold").touch()
    recorder = Recorder()
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    box: list[Any] = []
    nursery.start_soon(_outcome, updates, box)
    with trio.fail_after(SOON):
        await until(lambda: stand_in.started)
        updates.abort()
        stand_in.file("go").touch()
        await until(lambda: box)
    assert box[0] == {"status": "installed", "version": NEW, "previous": OLD,
                      "restarting": False}  # fmt: skip
    assert "-I -m pip install" in stand_in.file("started").read_text()
    assert recorder.installed == [NEW]
    assert recorder.resumes == 0


async def test_an_installer_that_fails_gives_the_work_back_once(
    nursery: trio.Nursery, trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    stand_in.file("fail").touch()
    recorder = Recorder()
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    with trio.fail_after(SOON), pytest.raises(UpdateError, match=r"pip failed \(exit 1\)"):
        await updates.update(None, False, False)
    assert stand_in.started
    assert recorder.drains == [False]
    assert recorder.resumes == 1
    assert recorder.installed == []
    assert "the stand-in installer fails" in str(updates.info()["lastError"])


async def test_an_installer_that_succeeds_without_installing_the_target_is_refused(
    nursery: trio.Nursery, trust_site: Site, manifest_url: str, tmp_path: Path
) -> None:
    stand_in = StandIn.make(tmp_path / "env", installs=None)  # exits 0, changes nothing
    recorder = Recorder()
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    with trio.fail_after(SOON), pytest.raises(UpdateError) as caught:
        await updates.update(None, False, False)
    said = str(caught.value)
    assert said.startswith("pip exited 0, but ")
    assert said.endswith(f"reports edge {OLD}, not {NEW}: the update did not take effect")
    assert recorder.installed == []
    assert recorder.resumes == 1
    assert recorder.events == []  # no update_installed


async def test_any_other_error_of_an_update_is_an_update_error_and_gives_the_work_back(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stand_in = StandIn.make(tmp_path / "env")
    recorder = Recorder()
    recorder.drain_error = RuntimeError("the drain broke")
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, check=False)  # fmt: skip
    with trio.fail_after(SOON), pytest.raises(UpdateError) as caught:
        await updates.update(None, False, False)
    assert str(caught.value) == "the update failed: RuntimeError: the drain broke"
    assert caught.value.__cause__ is recorder.drain_error
    assert recorder.resumes == 1
    assert not stand_in.started
    logged = [r for r in caplog.records if "the drain broke" in r.getMessage()]
    assert len(logged) == 1  # once, with its traceback
    assert logged[0].exc_info is not None


async def test_a_manifest_url_with_a_newline_is_refused_and_the_task_goes_on(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """httpx refuses such a URL with InvalidURL, which is no HTTPError: it used to end the
    task, and the daemon with it."""
    recorder = Recorder()
    installation = StandIn.make(tmp_path / "env").installation()
    updates = await _start(nursery, trust_site, manifest_url + "\n", installation, recorder,
                           tmp_path)  # fmt: skip
    with trio.fail_after(SOON):
        await until(lambda: updates.info()["lastError"])
    assert "holds white space or a control character: refused" in updates.info()["lastError"]
    failed = [r for r in caplog.records if r.getMessage().startswith("update check failed")]
    assert len(failed) == 1
    assert recorder.events == []


async def test_an_automatic_update_that_cannot_write_its_downloads_keeps_the_task(
    nursery: trio.Nursery,
    trust_site: Site,
    manifest_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    downloads = tmp_path / "a-file" / "updates"
    stand_in = StandIn.make(tmp_path / "env")
    recorder = Recorder()
    updates = await _start(nursery, trust_site, manifest_url, stand_in.installation(), recorder,
                           tmp_path, auto=True, as_service=True, downloads=downloads)  # fmt: skip
    with trio.fail_after(SOON):
        await until(lambda: updates.info()["lastError"])
    error = updates.info()["lastError"]
    assert error.startswith(f"cannot write {downloads}: ")
    assert recorder.drains == []  # refused before the drain
    assert not stand_in.started
    said = [r for r in caplog.records if str(downloads) in r.getMessage()]
    assert len(said) == 1
    assert updates.info()["updating"] is False
    await updates.scheduled()  # the task is still there to try again: and fails the same way
    assert recorder.drains == []


@pytest.mark.parametrize(
    ("environ", "interactive", "service"),
    [
        ({"EDGE_SERVICE": "systemd"}, False, True),
        ({"EDGE_SERVICE": "launchd"}, True, False),
        ({}, False, False),
        ({"EDGE_SERVICE": ""}, False, False),
    ],
)
def test_a_service_is_an_edge_service_variable_and_no_terminal(
    environ: dict[str, str], interactive: bool, service: bool, tmp_path: Path
) -> None:
    config = Config(workspace=tmp_path, update_manifest="https://x/v.json", update_key="k",
                    update_auto=True, state_dir=tmp_path / "state")  # fmt: skip
    options = UpdateOptions.from_config(config, environ=environ, interactive=interactive)
    assert options.as_service is service
    assert options.manifest_url == "https://x/v.json"
    assert options.auto is True
    assert options.downloads == tmp_path / "state" / "updates"
