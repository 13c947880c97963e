"""`pdca server start|stop|status` as a user runs them: real subprocesses, a real server.

The local server takes the place of the embedded API for the flow commands while it runs
and PREFECT_API_URL is unset (one line on stderr says so); a rerun stays in-process there
(the local server has no deployments); `stop` ends the server's whole process group; a
pid file left by a server that died is found stale and removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.prefect_server import seed_prefect_home
from tests.servers import free_port
from tests.test_cli import EXAMPLE, PDCA, Cli, assert_exit

pytestmark = pytest.mark.slow

CAMPAIGN = "sme-spring-2026"
WEEK = "2026-W12"


@pytest.fixture
def local(tmp_path: Path):
    """`pdca` in a working folder, its local server on a free port under its output dir;
    no PREFECT_API_URL (the user has configured no server)."""
    cli = Cli(tmp_path)
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PDCA_"))}
    base |= {
        "PDCA_DATABASE_URL": cli.url,
        "PDCA_OUTPUT_DIR": str(tmp_path / "out"),
        "PDCA_SERVER_PORT": str(port),
        "PREFECT_HOME": str(tmp_path / "client-home"),  # the commands' own, never ~/.prefect
    }

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PDCA), *argv],
            cwd=tmp_path,
            env=base | extra,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run.home = tmp_path / "out" / "prefect-server"  # type: ignore[attr-defined]
    run.url = f"http://127.0.0.1:{port}/api"  # type: ignore[attr-defined]
    yield run
    run("server", "stop")  # whatever the test left running


def group_gone(pgid: int, wait: float = 10.0) -> bool:
    """Whether no process of the group is left (zombies awaiting their reaper aside)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(stat.parent.name)
        if not members:
            return True
        time.sleep(0.2)
    return False


def flow_runs(url: str) -> list:
    """The server's flow runs, read with Prefect's client."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(url) as client:
        return client.read_flow_runs()


def test_start_use_status_stop(local) -> None:
    assert_exit(local("campaign", "apply", str(EXAMPLE)), 0)
    seed_prefect_home(local.home)  # the server's database migrated: not what is tested
    started = local("server", "start")
    assert_exit(started, 0)
    assert local.url in started.stdout
    pid = json.loads((local.home / "server.pid").read_text())["pid"]

    status = local("server", "status")
    assert_exit(status, 0)
    assert f"up at {local.url}" in status.stdout

    checked = local("check", "--campaign", CAMPAIGN, "--period", WEEK, "--json")
    assert_exit(checked, 1)  # the week has no rows: no_data, as without the server
    assert json.loads(checked.stdout)["data_quality"]["status"] == "no_data"
    assert f"using the local Prefect server at {local.url}" in checked.stderr
    rerun = local("rerun", "check", "--campaign", CAMPAIGN, "--period", WEEK)
    assert_exit(rerun, 0)  # in this process: the local server has no deployment to start
    assert f"check {CAMPAIGN} {WEEK}: Completed" in rerun.stdout
    checks = [run for run in flow_runs(local.url) if run.name == f"check {CAMPAIGN} {WEEK}"]
    assert len(checks) == 2, [run.name for run in flow_runs(local.url)]
    assert sorted("rerun" in run.tags for run in checks) == [False, True]
    assert all(run.state.is_completed() for run in checks)

    explicit = local(
        "check", "--campaign", CAMPAIGN, "--period", WEEK, PREFECT_API_URL=local.url
    )  # PREFECT_API_URL set wins: no word about the local server
    assert_exit(explicit, 1)
    assert "local Prefect server" not in explicit.stderr

    stopped = local("server", "stop")
    assert_exit(stopped, 0)
    assert f"pid {pid}" in stopped.stdout and "stopped" in stopped.stdout
    assert group_gone(pid), "the server's process group (uvicorn too) outlived `stop`"
    down = local("server", "status")
    assert_exit(down, 1)
    assert "down" in down.stdout and "stale" not in down.stdout


def test_a_stale_pid_file_is_found_and_removed(local) -> None:
    gone = subprocess.Popen(["sleep", "0"])
    gone.wait()
    local.home.mkdir(parents=True, exist_ok=True)
    pid_file = local.home / "server.pid"
    pid_file.write_text(json.dumps({"pid": gone.pid, "url": local.url}))

    status = local("server", "status")
    assert_exit(status, 1)
    assert "down" in status.stdout and f"stale pid file for pid {gone.pid}" in status.stdout
    assert not pid_file.exists()

    pid_file.write_text(json.dumps({"pid": gone.pid, "url": local.url}))
    stopped = local("server", "stop")
    assert_exit(stopped, 0)
    assert "not running" in stopped.stdout and "stale" in stopped.stdout
    assert not pid_file.exists()
