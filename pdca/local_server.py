"""`pdca server start|stop|status`: a local Prefect server (API and UI) in the background.

Every flow command otherwise starts Prefect's embedded API, which costs seconds each time
(README "Operations"). With the local server running and no PREFECT_API_URL configured,
the flow commands use it instead, and say so in one line on stderr; PREFECT_API_URL (the
environment or the active profile) always wins. The local server is an API for this
machine's in-process runs: runs, logs and artifacts land in it and show in its UI, and an
act run pauses there for decisions (`pdca actions approve` finds it there), as with any
server. But `pdca rerun` and `pdca backfill` keep running in this process: the local
server has no deployments and no workers; they go through deployments only when
PREFECT_API_URL names a server explicitly.

Its PREFECT_HOME (database, `server.log`, `server.pid`) is `PDCA_SERVER_HOME`, default
`PDCA_OUTPUT_DIR/prefect-server`; its port `PDCA_SERVER_PORT` (4200). The server runs in a
session of its own; `stop` sends SIGINT to its process group (uvicorn included), then
SIGKILL to what is left after a grace period.

Nothing here imports Prefect: `status` and a refused command stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

from pdca.errors import UserError
from pdca.settings import Settings, get_settings

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 180.0
"""Seconds `start` waits for `/api/health`: a fresh home migrates its database first
(about 15 s on two idle cores, much longer on busy ones)."""
STOP_GRACE = 20.0
"""Seconds after SIGINT before the rest of the process group is killed."""
PID_FILE = "server.pid"
LOG_FILE = "server.log"

server_app = typer.Typer(
    no_args_is_help=True,
    help="A local Prefect server (API and UI) in the background, used by the flow commands.",
)

_adopted: list[str] = []
"""The local server's API URL once this process's flow commands use it."""


@dataclass(frozen=True)
class LocalServer:
    """What the pid file records of a started server."""

    pid: int
    url: str
    """`http://127.0.0.1:<port>/api`."""
    home: Path

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


def server_home(settings: Settings) -> Path:
    """The server's PREFECT_HOME, absolute (a command may run from another folder later)."""
    return (settings.server_home or settings.output_dir / "prefect-server").resolve()


def read_pid_file(home: Path) -> LocalServer | None:
    """The pid file's server, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((home / PID_FILE).read_text())
        return LocalServer(int(record["pid"]), str(record["url"]), home)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) Prefect process: a recycled pid is not ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc to look at: trust the signal
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return state != "Z" and b"prefect" in command


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the API answers `/health` right now."""
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(settings: Settings) -> LocalServer | None:
    """The local server when its process lives and its API answers; else None."""
    server = read_pid_file(server_home(settings))
    if server is None or not process_alive(server.pid) or not healthy(server.url):
        return None
    return server


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def start_server(settings: Settings, timeout: float = STARTUP_TIMEOUT) -> LocalServer:
    """Start the server in the background and wait until its API answers."""
    home = server_home(settings)
    port = settings.server_port
    if not _port_free(port):
        raise UserError(
            f"port {port} on {HOST} is taken (another Prefect server?); "
            "set PDCA_SERVER_PORT to a free one"
        )
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": url,
    }
    prefect = str(Path(sys.executable).parent / "prefect")
    argv = [prefect, "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
    with (home / LOG_FILE).open("a") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: `stop` ends uvicorn with it
        )
    server = LocalServer(process.pid, url, home)
    (home / PID_FILE).write_text(json.dumps({"pid": server.pid, "url": url}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            (home / PID_FILE).unlink(missing_ok=True)
            raise UserError(f"the Prefect server exited at start; see {home / LOG_FILE}")
        if healthy(url):
            return server
        time.sleep(0.5)
    stop_server(server)
    raise UserError(f"the Prefect server did not answer within {timeout:.0f} s; see its log")


def stop_server(server: LocalServer, grace: float = STOP_GRACE) -> None:
    """SIGINT to the server's process group, SIGKILL to what is left after `grace`."""
    _signal_group(server.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while _group_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(server.pid):
        _signal_group(server.pid, signal.SIGKILL)
        time.sleep(0.5)
    (server.home / PID_FILE).unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the server leads its own session and group


def _group_alive(pid: int) -> bool:
    """Whether any live process is left in the group the server leads."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_alive(pid) or _other_members(pid)


def _other_members(pgid: int) -> bool:
    """Live (not zombie) members of the group other than its leader, by /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z" and int(stat.parent.name) != pgid:
                return True
    return False


@contextlib.contextmanager
def local_server_api() -> Iterator[str | None]:
    """Around a command's flow runs: the local server's API when it runs and no
    PREFECT_API_URL is configured (said in one line on stderr); yields its URL or None.

    Prefect keeps its settings in a process-global context that threads (the task runner's)
    fall back to: the environment is set and that context rebuilt, then both restored."""
    from prefect.settings import PREFECT_API_URL

    server = None if PREFECT_API_URL.value() else running_server(get_settings())
    if server is None:
        yield None
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import temporary_settings

    print(f"using the local Prefect server at {server.url}", file=sys.stderr, flush=True)
    os.environ["PREFECT_API_URL"] = server.url
    refresh_global_settings_context()
    _adopted.append(server.url)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            yield server.url
    finally:
        _adopted.remove(server.url)
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()


@contextlib.contextmanager
def flow_api() -> Iterator[None]:
    """Prefect's API and settings for a command's flow runs: the local server when it is
    up and nothing else is configured, and the settings of
    `flows.operations.embedded_api_settings`."""
    with local_server_api():
        from flows.operations import embedded_api_settings

        with embedded_api_settings():
            yield


def local_server_adopted() -> bool:
    """Whether this process's flow runs go to the local server (not to PREFECT_API_URL)."""
    return bool(_adopted)


# --- the commands ---------------------------------------------------------------------------


@server_app.command("start")
def start() -> None:
    """Start the local Prefect server (API and UI) in the background; wait until it answers."""
    settings = get_settings()
    server = running_server(settings)
    if server is not None:
        typer.echo(f"the local Prefect server is already up at {server.url} (pid {server.pid})")
        return
    _forget_stale(server_home(settings))
    server = start_server(settings)
    typer.echo(
        f"the local Prefect server is up at {server.url} (UI {server.ui_url}, pid {server.pid}, "
        f"home {server.home}); the flow commands use it while PREFECT_API_URL is unset"
    )


@server_app.command("stop")
def stop() -> None:
    """Stop the local Prefect server and its children (SIGINT, then SIGKILL after a grace)."""
    home = server_home(get_settings())
    server = read_pid_file(home)
    if server is None or not process_alive(server.pid):
        stale = _forget_stale(home)
        typer.echo("the local Prefect server is not running" + stale)
        return
    stop_server(server)
    typer.echo(f"the local Prefect server (pid {server.pid}) is stopped")


@server_app.command("status")
def status() -> None:
    """Whether the local Prefect server is up, and its URL; exit code 1 when it is down."""
    settings = get_settings()
    home = server_home(settings)
    server = read_pid_file(home)
    if server is not None and process_alive(server.pid):
        if healthy(server.url):
            typer.echo(
                f"the local Prefect server is up at {server.url} "
                f"(UI {server.ui_url}, pid {server.pid}, home {home})"
            )
            return
        typer.echo(
            f"the local Prefect server (pid {server.pid}) does not answer at {server.url}: "
            f"starting, or stuck; see {home / LOG_FILE}"
        )
        raise typer.Exit(1)
    typer.echo("the local Prefect server is down" + _forget_stale(home))
    raise typer.Exit(1)


def _forget_stale(home: Path) -> str:
    """Remove a pid file whose process is gone; the words to add to the message."""
    server = read_pid_file(home)
    path = home / PID_FILE
    if not path.exists() or (server is not None and process_alive(server.pid)):
        return ""
    path.unlink(missing_ok=True)
    pid = f" for pid {server.pid}" if server else ""
    return f" (removed a stale pid file{pid}: the server had stopped without `pdca server stop`)"
