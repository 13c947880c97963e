"""A process that ran pdca ends without the cycle collector's last passes (pdca/__init__.py).

Both kinds of process that run flows are probed in a child interpreter: the `pdca` command
and a worker's flow-run process, which loads the deployment's entrypoint by its path as
`python -m prefect.engine` does. The probe's own exit handler is registered before pdca is
imported, so it runs after pdca's (handlers run last-registered first) and sees what
Python's shutdown will see. Without the registration it prints `frozen False`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEES_THE_SHUTDOWN = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
)


def probe(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SEES_THE_SHUTDOWN + code], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize(("argv", "code"), [(["--version"], 0), (["check"], 2)])
def test_the_command_keeps_its_exit_code_and_skips_the_last_collections(
    tmp_path: Path, argv: list[str], code: int
) -> None:
    done = probe(f"sys.argv = ['pdca', *{argv!r}]\nfrom pdca.cli import main\nmain()\n", tmp_path)
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines()[-1] == "frozen True", done.stdout
    assert main_script_target() == "pdca.cli:main"


def test_a_workers_flow_run_process_skips_them_too() -> None:
    """The flow is loaded from its file, not as `flows.check`: pdca comes in through the
    flow module's own imports."""
    done = probe(
        "from prefect.flows import load_flow_from_entrypoint\n"
        "flow = load_flow_from_entrypoint('flows/check.py:check_flow')\n"
        "assert 'flows.check' not in sys.modules, 'loaded as a package module'\n"
        "print('loaded', flow.name)\n",
        ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["loaded check", "frozen True"], done.stdout


def main_script_target() -> str:
    """What the installed `pdca` command runs (its entry point)."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="pdca")
    return script.value
