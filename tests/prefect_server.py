"""A real Prefect server (and process workers) for the tests that need more than the
embedded API: deployments, workers, events, the approval pause.

`prefect server start` runs as a subprocess on a free loopback port with its own
`PREFECT_HOME` (its SQLite database, results and profiles) and analytics off; the
scheduler is off by default so that the deployments' cron schedules never start a run in
the middle of a test. In-process flows and clients talk to it inside `server.use()`;
subprocesses (the `prefect` CLI, workers) get `server.env()`::

    server = start_prefect_server(tmp_path / "prefect-home")
    with server.use():
        my_flow()                     # the run is recorded on the real server
    worker = start_worker(server, pool="pdca", cwd=repo)
    ...
    worker.stop()
    server.stop()                     # drains this process's log and event workers first
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.servers import HOST, free_port

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
STARTUP_TIMEOUT = 120.0
"""Seconds to wait for `/api/health`: a fresh home migrates its database first (≈ 10 s
on two idle cores, much more when the cores are busy)."""
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
}
"""Offline machines: telemetry look-ups fail and cost seconds; the CLI must never ask."""
TEMPLATE_ROOT = "PDCA_TEST_PREFECT_TEMPLATE_ROOT"
"""Where the run's migrated Prefect database is kept (set by tests/conftest.py to a folder
that every pytest-xdist worker of the run shares)."""


def seed_prefect_home(home: Path) -> Path:
    """`home` with a copy of a migrated Prefect database, unless it has one already.

    Every fresh PREFECT_HOME (a Prefect server's, the embedded API's, a CLI subprocess's)
    would otherwise migrate its own database first: about 7 s of CPU each, a dozen times a
    run. The copy is what PLATFORM-NOTES advises; Prefect still checks the schema's
    revision at start-up and finds nothing to do.
    """
    home.mkdir(parents=True, exist_ok=True)
    root = os.environ.get(TEMPLATE_ROOT)
    if root and not (home / "prefect.db").exists():
        shutil.copy(migrated_prefect_db(Path(root)), home / "prefect.db")
    return home


def migrated_prefect_db(root: Path) -> Path:
    """The run's migrated Prefect database, made by the first worker that asks (a file lock
    keeps the others waiting) with `prefect server database upgrade`."""
    template = root / "prefect-template" / "prefect.db"
    with (root / "prefect-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            staging = root / "prefect-template-staging"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            env = {**os.environ, **QUIET, "PREFECT_HOME": str(staging)}
            env.pop("PREFECT_API_URL", None)
            subprocess.run(
                [PREFECT, "server", "database", "upgrade", "-y"],
                env=env,
                check=True,
                capture_output=True,
                timeout=STARTUP_TIMEOUT,
            )
            staging.rename(template.parent)
    return template


@dataclass
class PrefectServer:
    """A running `prefect server start`: where its API is and where its home is."""

    api_url: str
    """`http://127.0.0.1:<port>/api`, the value for `PREFECT_API_URL`."""
    home: Path
    """Its `PREFECT_HOME`: the server's database, results, profiles."""
    process: subprocess.Popen
    log: Path
    """The server's stdout and stderr, for the message of a failing test."""

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess that talks to this server (CLI, worker, flow)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        return {
            **base,
            **QUIET,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            **extra,
        }

    @contextmanager
    def use(self) -> Iterator[str]:
        """In this process, flows, clients, logs and events go to this server in the block.

        Prefect reads its settings once into a process-global context (which threads, e.g.
        a flow run in a background thread, fall back to): the environment is set and
        that context rebuilt, then both are restored. Yields the API URL.
        """
        from prefect.context import refresh_global_settings_context
        from prefect.settings import PREFECT_API_URL, temporary_settings

        saved = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = self.api_url
        refresh_global_settings_context()
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
                yield self.api_url
        finally:
            drain_client_workers()
            if saved is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = saved
            refresh_global_settings_context()

    def cli(self, *argv: str, cwd: Path | None = None, timeout: float = 300, **env: str):
        """`prefect ARGV` against this server; the completed process (never raises)."""
        return subprocess.run(
            [PREFECT, *argv],
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def healthy(self) -> bool:
        """Whether `/api/health` answers right now."""
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for a failure message."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Drain what this process still has to send, then stop the server and its children.

        Undrained log and event workers would keep retrying a dead server when pytest
        exits (about 70 s, PLATFORM-NOTES).
        """
        drain_client_workers()
        stop_process(self.process, signal.SIGINT, grace=20)


@dataclass
class ProcessWorker:
    """A running `prefect worker start --type process` and its output file."""

    pool: str
    process: subprocess.Popen
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT: the worker ignores one SIGTERM (PLATFORM-NOTES) but stops on SIGINT."""
        stop_process(self.process, signal.SIGINT, grace=30)


def start_prefect_server(
    home: Path, *, scheduler: bool = False, timeout: float = STARTUP_TIMEOUT, **env: str
) -> PrefectServer:
    """`prefect server start` on a free loopback port with `home` as its PREFECT_HOME;
    `env` is added to its environment (e.g. `PREFECT_API_DATABASE_CONNECTION_URL`).

    Runs in its own process group so that `stop()` also ends the uvicorn process it starts.
    """
    extra = env
    seed_prefect_home(home)
    log = home / "server.log"
    for _ in range(3):  # the port may be taken between asking and binding
        port = free_port()
        server = PrefectServer(
            api_url=f"http://{HOST}:{port}/api",
            home=home,
            process=None,  # type: ignore[arg-type]  (set right below)
            log=log,
        )
        env = server.env(**extra)
        env.pop("PREFECT_API_URL")  # a server that points at itself only confuses it
        env["PREFECT_SERVER_UI_ENABLED"] = "false"
        argv = [PREFECT, "server", "start", "--host", HOST, "--port", str(port)]
        argv += ["--analytics-off", "--no-ui"]
        argv += [] if scheduler else ["--no-scheduler"]
        with log.open("a") as out:
            server.process = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if _wait_healthy(server, timeout):
            return server
        stop_process(server.process, signal.SIGINT, grace=10)
    raise RuntimeError(f"the Prefect server did not start; its log:\n{server.log_tail()}")


def _wait_healthy(server: PrefectServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False  # exited: e.g. the port was taken after all
        if server.healthy():
            return True
        time.sleep(0.25)
    return False


def start_worker(
    server: PrefectServer,
    *,
    pool: str = "pdca",
    cwd: Path | None = None,
    name: str | None = None,
    limit: int | None = None,
    **env: str,
) -> ProcessWorker:
    """`prefect worker start --pool POOL --type process` against `server`, named `name`
    and running at most `limit` flow runs at once when given.

    `env` is added to the worker's environment, which the flow-run processes it starts
    inherit (e.g. `PDCA_DATABASE_URL`, `PDCA_CHECKOUT`). The worker asks the server for
    runs every second (`PREFECT_WORKER_QUERY_SECONDS`) unless `env` says otherwise:
    Prefect's default, 10 s, would leave each test's run waiting 5 s on average.
    """
    env = {"PREFECT_WORKER_QUERY_SECONDS": "1", **env}
    log = server.home / f"worker-{name or pool}-{time.monotonic_ns()}.log"
    argv = [PREFECT, "worker", "start", "--pool", pool, "--type", "process"]
    argv += ["--name", name] if name else []
    argv += ["--limit", str(limit)] if limit else []
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=server.env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ProcessWorker(pool, process, log, dict(env))


def stop_process(process: subprocess.Popen, sig: signal.Signals, *, grace: float) -> None:
    """Send `sig` to the process (and its group, which it leads), then SIGKILL the group
    if it has not ended within `grace` seconds."""
    if process.poll() is None:
        _signal_group(process, sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
    _signal_group(process, signal.SIGKILL)  # leftover children (uvicorn, flow runs)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # the group this test started (start_new_session)


def drain_client_workers() -> None:
    """Send what this process's log and event workers still hold, and stop them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):  # never started
            service.drain_all(timeout=20)
