"""How fast bad usage is refused: `pdca check` of an unknown campaign, and friends.

The promise (README, "Command line"): an unknown campaign, a malformed period or a day
outside the campaign is refused with exit code 2 in under a second, before Prefect starts.
Baseline, measured in the same run: the bare interpreter start (`python -c pass`) and
`pdca --version` (the CLI's own import). Each figure is the median of `--runs` runs.

    python bench/bench_cli_refusal.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PDCA = str(Path(sys.executable).parent / "pdca")
EXAMPLE = ROOT / "examples" / "sme-spring-2026.yaml"
TARGET_SECONDS = 1.0


def timed(argv: list[str], env: dict[str, str], expect: int, runs: int) -> float:
    """The median wall time of `argv`, which must exit with `expect` every time."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode != expect:
            raise SystemExit(f"{argv}: exit {done.returncode}, expected {expect}\n{done.stderr}")
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDCA_", "PREFECT_"))}
        env |= {
            "PDCA_DATABASE_URL": f"sqlite:///{folder}/pdca.db",
            "PREFECT_HOME": f"{folder}/prefect-home",
        }
        subprocess.run([PDCA, "campaign", "apply", str(EXAMPLE)], env=env, check=True)
        baseline = timed([sys.executable, "-c", "pass"], env, 0, runs)
        version = timed([PDCA, "--version"], env, 0, runs)
        cases = {
            "unknown campaign": ["check", "--campaign", "nosuch", "--period", "2026-W10"],
            "malformed period": ["check", "--campaign", "sme-spring-2026", "--period", "2026-W99"],
            "rerun, unknown campaign": [
                "rerun",
                "check",
                "--campaign",
                "x",
                "--period",
                "2026-W10",
            ],
            "dispatch after the end": [
                "dispatch",
                "--campaign",
                "sme-spring-2026",
                "--date",
                "2026-06-01",
            ],
        }
        figures = {name: timed([PDCA, *argv], env, 2, runs) for name, argv in cases.items()}
        prefect_started = any(Path(folder, "prefect-home").glob("*"))
    print(f"runs per figure: {runs} (median); load average {os.getloadavg()[0]:.2f}")
    print(f"baseline  python -c pass       {baseline:6.3f} s")
    print(f"baseline  pdca --version       {version:6.3f} s")
    for name, seconds in figures.items():
        print(f"refused   {name:<22} {seconds:6.3f} s")
    print(f"Prefect started: {'yes' if prefect_started else 'no'}")
    worst = max(figures.values())
    print(f"ratio: {worst / TARGET_SECONDS:.2f} (target: 1.00, i.e. every refusal < 1 s)")


if __name__ == "__main__":
    main()
