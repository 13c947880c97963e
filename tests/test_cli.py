"""The `pdca` command line as a user runs it: a subprocess, a SQLite file, exit codes.

Contract: exit 0 on success, 1 when the work ran but found a problem the user must see,
2 for bad usage or bad input with one human line on stderr naming the file (and line),
never a Python traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from pdca.models import Campaign, Customer, QuarantinedRow
from tasks.common.feeds import FEEDS

ROOT = Path(__file__).resolve().parents[1]
PDCA = Path(sys.executable).parent / "pdca"
EXAMPLE = ROOT / "examples" / "sme-spring-2026.yaml"
CUSTOMERS_HEADER = ",".join(FEEDS["customers"].column_names)


def customer(number: int, credit_score: int = 650) -> str:
    return f"c{number:04d},sme,north,{credit_score},5000,0.3,retail,,,true,false,"


class Cli:
    """Runs `pdca` in its own working folder against its own SQLite database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database = folder / "pdca.db"
        self.url = f"sqlite:///{self.database}"

    def __call__(self, *argv: str, url: str | None = None, **env: str):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PDCA_")}
        environment |= {"PDCA_DATABASE_URL": url or self.url, **env}
        return subprocess.run(
            [str(PDCA), *argv],
            cwd=self.folder,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def count(self, model) -> int:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(model)).scalar_one()
        finally:
            engine.dispose()

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A working folder with no database yet: the first command creates it."""
    return Cli(tmp_path)


@pytest.fixture
def migrated(tmp_path: Path, sqlite_url: str) -> Cli:
    """A working folder whose database is already migrated (saves a `db upgrade` run)."""
    cli = Cli(tmp_path)
    assert sqlite_url == cli.url
    return cli


def assert_exit(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    assert "Traceback" not in result.stderr, f"a traceback reached the user:\n{result.stderr}"


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr, mentioning every fragment; returns the line."""
    assert_exit(result, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"stderr {lines[0]!r} should mention {fragment!r}"
    return lines[0]


class TestDbUpgrade:
    def test_success(self, cli: Cli) -> None:
        result = cli("db", "upgrade")
        assert_exit(result, 0)
        assert cli.database.is_file()
        assert "schema is current" in result.stdout
        assert_exit(cli("db", "upgrade"), 0)

    def test_failure_unreachable_postgres(self, cli: Cli) -> None:
        url = "postgresql+psycopg://pdca:secret@127.0.0.1:1/pdca"
        line = assert_one_error_line(cli("db", "upgrade", url=url), "127.0.0.1:1")
        assert "secret" not in line, "the password must not be printed"

    def test_failure_unreachable_postgres_on_import(self, cli: Cli) -> None:
        path = cli.write("customers.csv", f"{CUSTOMERS_HEADER}\n{customer(1)}\n")
        url = "postgresql+psycopg://pdca:secret@127.0.0.1:1/pdca"
        assert_one_error_line(cli("import", "customers", str(path), url=url), "127.0.0.1:1")


class TestCampaignApply:
    def test_success_created_then_unchanged(self, cli: Cli) -> None:
        first = cli("campaign", "apply", str(EXAMPLE))
        assert_exit(first, 0)
        assert first.stdout.strip() == "campaign sme-spring-2026: created"
        again = cli("campaign", "apply", str(EXAMPLE))
        assert_exit(again, 0)
        assert again.stdout.strip() == "campaign sme-spring-2026: unchanged"
        assert cli.count(Campaign) == 1

    def test_success_changed_spec_updates(self, cli: Cli) -> None:
        assert_exit(cli("campaign", "apply", str(EXAMPLE)), 0)
        changed = cli.write(
            "spec.yaml", EXAMPLE.read_text().replace("budget_total: 500000", "budget_total: 1")
        )
        result = cli("campaign", "apply", str(changed))
        assert_exit(result, 0)
        assert result.stdout.strip() == "campaign sme-spring-2026: updated"

    def test_failure_invalid_spec_lists_every_field(self, migrated: Cli) -> None:
        cli = migrated
        text = (
            EXAMPLE.read_text()
            .replace("id: sme-spring-2026", "id: SME Spring")
            .replace("apr_cap: 24.0", "apr_cap: -1")
            .replace("holdout: 0.10", "holdout: 0.50")
        )
        spec = cli.write("bad.yaml", text)
        line = assert_one_error_line(
            cli("campaign", "apply", str(spec)),
            str(spec),
            "id:",
            "risk.apr_cap:",
            "experiment:",
        )
        assert line.startswith("pdca: error: ")
        assert cli.count(Campaign) == 0, "an invalid spec writes nothing"

    def test_failure_missing_spec(self, cli: Cli) -> None:
        assert_one_error_line(cli("campaign", "apply", "nowhere.yaml"), "nowhere.yaml", "no such")


class TestImport:
    def test_success_prints_the_counts(self, cli: Cli) -> None:
        path = cli.write(
            "customers.csv", "\n".join([CUSTOMERS_HEADER, customer(1), customer(2)]) + "\n"
        )
        result = cli("import", "customers", str(path))
        assert_exit(result, 0)
        assert result.stdout.strip() == f"customers: 2 rows in {path}: 2 loaded, 0 quarantined"
        assert cli.count(Customer) == 2

    def test_success_uci_bank(self, cli: Cli) -> None:
        header = (
            '"age";"job";"marital";"education";"default";"balance";"housing";"loan";"contact";'
            '"day";"month";"duration";"campaign";"pdays";"previous";"poutcome";"y"'
        )
        row = (
            '58;"management";"married";"tertiary";"no";2143;"yes";"no";"unknown";5;"may";261;1;'
            '-1;0;"unknown";"yes"'
        )
        path = cli.write("bank.csv", f"{header}\n{row}\n")
        result = cli("import", "uci-bank", str(path))
        assert_exit(result, 0)
        assert "1 rows" in result.stdout and "1 loaded, 0 quarantined" in result.stdout

    def test_failure_over_the_quarantine_limit_exits_1(self, cli: Cli) -> None:
        rows = [customer(number) for number in range(1, 11)]
        rows[4] = customer(5, credit_score=1200)
        path = cli.write("customers.csv", "\n".join([CUSTOMERS_HEADER, *rows]) + "\n")
        result = cli("import", "customers", str(path))
        assert_exit(result, 1)
        assert "10 rows" in result.stdout and "9 loaded, 1 quarantined" in result.stdout
        assert "credit_score" in result.stderr, "the reasons are listed for the user"
        assert "10.0% of rows quarantined" in result.stderr
        assert cli.count(Customer) == 9, "the good rows load even when the file fails"
        assert cli.count(QuarantinedRow) == 1

    @pytest.mark.parametrize(("bad", "code"), [(1, 0), (2, 1)], ids=["1 in 100", "2 in 100"])
    def test_limit_is_above_one_percent(self, cli: Cli, bad: int, code: int) -> None:
        rows = [customer(n, 1200 if n <= bad else 650) for n in range(1, 101)]
        path = cli.write("customers.csv", "\n".join([CUSTOMERS_HEADER, *rows]) + "\n")
        assert_exit(cli("import", "customers", str(path)), code)

    def test_success_limit_is_a_setting(self, cli: Cli) -> None:
        rows = [customer(1), customer(2, credit_score=1200)]
        path = cli.write("customers.csv", "\n".join([CUSTOMERS_HEADER, *rows]) + "\n")
        result = cli("import", "customers", str(path), PDCA_QUARANTINE_MAX_SHARE="0.5")
        assert_exit(result, 0)


FILE_FAULTS = [
    # (case, feed, file name, content or None for no file, fragments of the error line)
    ("missing file", "customers", "nowhere.csv", None, ["nowhere.csv", "no such file"]),
    (
        "unknown feed",
        "prospects",
        "customers.csv",
        f"{CUSTOMERS_HEADER}\n{customer(1)}\n",
        ["unknown feed 'prospects'", "customers"],
    ),
    (
        "wrong delimiter",
        "customers",
        "customers.csv",
        f"{CUSTOMERS_HEADER.replace(',', ';')}\n{customer(1).replace(',', ';')}\n",
        ["customers.csv", "line 1", "';'"],
    ),
    (
        "missing column",
        "customers",
        "customers.csv",
        f"{CUSTOMERS_HEADER.replace(',phone', '')}\n{customer(1)[:-1]}\n",
        ["customers.csv", "line 1", "missing column(s) phone"],
    ),
    ("empty file", "customers", "customers.csv", b"", ["customers.csv", "line 1", "empty"]),
    (
        "not UTF-8",
        "customers",
        "customers.csv",
        CUSTOMERS_HEADER.replace("region", "r\xe9gion").encode("latin-1") + b"\n",
        ["customers.csv", "line 1", "UTF-8"],
    ),
]


class TestImportFileFaults:
    @pytest.mark.parametrize(
        ("feed", "name", "content", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in FILE_FAULTS],
    )
    def test_failure(
        self,
        migrated: Cli,
        feed: str,
        name: str,
        content: str | bytes | None,
        fragments: list[str],
    ) -> None:
        cli = migrated
        path = cli.folder / name if content is None else cli.write(name, content)
        line = assert_one_error_line(cli("import", feed, str(path)), *fragments)
        assert line.startswith("pdca: error: ")
        assert result_is_empty(cli), "a refused file writes nothing"

    def test_failure_usage_error_exits_2(self, cli: Cli) -> None:
        result = cli("import", "customers")
        assert_exit(result, 2)
        assert "Missing argument" in result.stderr


def result_is_empty(cli: Cli) -> bool:
    return cli.count(Customer) == 0 and cli.count(QuarantinedRow) == 0


class TestUserErrorsInsideFlows:
    """A user error raised inside a Prefect flow reaches the user as one line, no traceback.

    Prefect logs the failed run on stderr too (one line per log record); the CLI's own
    message is the single `pdca: error:` line.
    """

    def test_plan_without_history(self, migrated: Cli, prefect_home: Path) -> None:
        spec = Path(__file__).resolve().parents[1] / "examples" / "sme-spring-2026.yaml"
        assert_exit(migrated("campaign", "apply", str(spec)), 0)
        result = migrated(
            "plan",
            "--campaign",
            "sme-spring-2026",
            "--period",
            "2026-03",
            PREFECT_HOME=str(prefect_home),
        )
        assert_exit(result, 2)
        errors = [line for line in result.stderr.splitlines() if line.startswith("pdca: error")]
        assert len(errors) == 1 and "no history to plan 2026-03" in errors[0], result.stderr

    def test_bad_period_is_refused_before_any_flow_starts(self, migrated: Cli) -> None:
        assert_one_error_line(
            migrated("plan", "--campaign", "x", "--period", "2026-13"), "2026-13", "month"
        )


class TestRefusedBeforePrefectStarts:
    """Bad usage of every stage command is refused with exit code 2 and one line, and
    Prefect never starts: its home stays empty (no embedded API, no database)."""

    @pytest.fixture(scope="class")
    def applied(self, tmp_path_factory) -> Cli:
        cli = Cli(tmp_path_factory.mktemp("refusals"))
        assert_exit(cli("campaign", "apply", str(EXAMPLE)), 0)
        return cli

    @pytest.mark.parametrize(
        ("argv", "fragments"),
        [
            (["check", "--campaign", "nosuch", "--period", "2026-W10"], ["nosuch", "sme-spring"]),
            (["act", "--campaign", "nosuch", "--period", "2026-W10"], ["unknown campaign"]),
            (["plan", "--campaign", "nosuch", "--period", "2026-03"], ["unknown campaign"]),
            (["check", "--campaign", "sme-spring-2026", "--period", "2026-W99"], ["week 99"]),
            (["rerun", "check", "--campaign", "nosuch", "--period", "2026-W10"], ["nosuch"]),
            (
                [
                    "backfill",
                    "act",
                    "--campaign",
                    "nosuch",
                    "--from",
                    "2026-W10",
                    "--to",
                    "2026-W11",
                ],
                ["unknown campaign"],
            ),
            (
                ["dispatch", "--campaign", "sme-spring-2026", "--date", "2026-06-01"],
                ["2026-03-02 to 2026-05-31", "2026-06-01 is outside"],
            ),
            (
                ["rerun", "dispatch", "--campaign", "sme-spring-2026", "--date", "2026-02-27"],
                ["2026-02-27 is outside"],
            ),
            (
                [
                    "dispatch",
                    "--campaign",
                    "sme-spring-2026",
                    "--date",
                    "2026-03-03",
                    "--window",
                    "x",
                ],
                ["--window 'x'", "noon"],
            ),
            (["dispatch", "--campaign", "sme-spring-2026", "--date", "3/3/2026"], ["YYYY-MM-DD"]),
        ],
    )
    def test_refused(self, applied: Cli, tmp_path: Path, argv, fragments) -> None:
        home = tmp_path / "prefect-home"
        home.mkdir()
        result = applied(*argv, PREFECT_HOME=str(home))
        assert_one_error_line(result, *fragments)
        assert not list(home.iterdir()), "Prefect started before the usage was checked"

    def test_refused_without_importing_prefect_or_pandas(self, applied: Cli) -> None:
        """A refusal comes within a second (bench/bench_cli_refusal.py). Prefect's import
        takes 0.8 s and pandas' 0.35 s of slow minutes here, so neither is on the way to it
        (a pandas at the top of the feeds' table once made every refusal over a second)."""
        argv = ["check", "--campaign", "nosuch", "--period", "2026-W10"]
        result = applied(*argv, PYTHONPROFILEIMPORTTIME="1")
        assert_exit(result, 2)
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert {"pdca.cli", "sqlalchemy"} <= imported, result.stderr[-2000:]
        assert not imported & {"prefect", "pandas", "numpy"}, sorted(imported)


class TestHelpAndVersion:
    def test_version(self, cli: Cli) -> None:
        from importlib.metadata import version

        result = cli("--version")
        assert_exit(result, 0)
        assert result.stdout.strip() == f"pdca {version('pdca')}"

    def test_help_shows_defaults_and_plain_flags(self, cli: Cli) -> None:
        demo = cli("demo", "--help")
        assert_exit(demo, 0)
        assert "[default: 50000; x>=100]" in demo.stdout, demo.stdout
        check = cli("check", "--help")
        assert_exit(check, 0)
        assert "<bool>" not in check.stdout and "--json " in check.stdout, check.stdout


class TestDemoKeepsAUsersDatabase:
    def test_refuses_a_database_with_another_campaign(self, cli: Cli, tmp_path: Path) -> None:
        assert_exit(cli("campaign", "apply", str(EXAMPLE)), 0)
        home = tmp_path / "prefect-home"
        home.mkdir()
        result = cli("demo", "--customers", "100", "--weeks", "1", PREFECT_HOME=str(home))
        assert_one_error_line(result, str(cli.database), "sme-spring-2026", "--force")
        assert cli.count(Campaign) == 1, "the user's campaign is gone"
        assert not list(home.iterdir()), "Prefect started before the refusal"

    def test_the_flow_refuses_too(self, cli: Cli) -> None:
        """The demo deployment is one click away in the UI: the flow checks as well."""
        from flows.demo import reset_demo_database
        from pdca.errors import UserError

        assert_exit(cli("campaign", "apply", str(EXAMPLE)), 0)
        with pytest.raises(UserError, match="not only an earlier demo"):
            reset_demo_database.fn(cli.url)
        assert cli.count(Campaign) == 1
        reset_demo_database.fn(cli.url, force=True)
        assert cli.count(Campaign) == 0


@pytest.mark.slow
def test_a_period_without_data_is_no_data_not_trusted(cli: Cli, prefect_home: Path) -> None:
    """The campaign exists, the week is inside it, and no feed has a row: nothing passes."""
    import json

    assert_exit(cli("campaign", "apply", str(EXAMPLE)), 0)
    argv = ["check", "--campaign", "sme-spring-2026", "--period", "2026-W12", "--json"]
    result = cli(*argv, PREFECT_HOME=str(prefect_home))
    assert_exit(result, 1)
    document = json.loads(result.stdout)
    assert document["trusted"] is False
    assert document["data_quality"]["status"] == "no_data"
    (line,) = [line for line in result.stderr.splitlines() if "no data" in line]
    assert "sme-spring-2026 2026-W12: no data" in line


class TestHostileInput:
    """Hostile or unlucky input at the command line: one line, the right exit, no traceback."""

    def test_export_to_a_directory(self, migrated: Cli) -> None:
        folder = migrated.folder / "exports"
        folder.mkdir()
        assert_one_error_line(migrated("export", "touches", str(folder)), "is a directory")

    @pytest.mark.parametrize(
        ("old", "new", "field"),
        [
            ("budget_total: 500000", "budget_total: .inf", "budget_total:"),
            ("max_touches_per_7d: 2", "max_touches_per_7d: 99999999999999999999999999",
             "contact_policy.max_touches_per_7d:"),
            ("sms: templates/sms.j2", "sms: /etc/passwd", "templates.sms:"),
        ],
    )  # fmt: skip
    def test_spec_out_of_bounds(self, migrated: Cli, old: str, new: str, field: str) -> None:
        text = EXAMPLE.read_text(encoding="utf-8")
        assert old in text
        spec = migrated.write("spec.yaml", text.replace(old, new))
        line = assert_one_error_line(migrated("campaign", "apply", str(spec)), field)
        assert "root:" not in line, "the refusal never quotes the named file"
        assert migrated.count(Campaign) == 0

    def test_spec_not_utf8(self, migrated: Cli) -> None:
        text = EXAMPLE.read_text(encoding="utf-8").replace("name: ", "name: Campa\u00f1a ", 1)
        spec = migrated.write("latin1.yaml", text.encode("latin-1"))
        assert_one_error_line(migrated("campaign", "apply", str(spec)), "not UTF-8", "line ")

    @pytest.mark.parametrize("period", ["0000-01", "9999-Q4"])
    def test_implausible_period(self, migrated: Cli, period: str) -> None:
        result = migrated("plan", "--campaign", "sme-spring-2026", "--period", period)
        assert_one_error_line(result, period, "1970..2100")

    def test_bad_setting_is_one_line(self, migrated: Cli) -> None:
        path = migrated.write("customers.csv", f"{CUSTOMERS_HEADER}\n{customer(1)}\n")
        result = migrated("import", "customers", str(path), PDCA_IMPORT_CHUNK_ROWS="0")
        assert_one_error_line(result, "PDCA_IMPORT_CHUNK_ROWS")

    def test_unexpected_error_is_one_line_with_the_traceback_in_the_log(
        self, migrated: Cli
    ) -> None:
        """A failure pdca did not foresee: exit 1, one line, the traceback in the debug log;
        `--debug` shows it on stderr instead."""
        path = migrated.write("customers.csv", f"{CUSTOMERS_HEADER}\n{customer(1)}\n")
        hooks = migrated.folder / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(
            "import tasks.data.importing as importing\n"
            "def broken(*args, **kwargs):\n"
            "    raise RuntimeError('disk on fire')\n"
            "importing.import_feed = broken\n"
        )
        env = {
            "PYTHONPATH": os.pathsep.join([str(hooks), str(ROOT)]),
            "PDCA_OUTPUT_DIR": str(migrated.folder / "out"),
        }
        result = migrated("import", "customers", str(path), **env)
        assert_exit(result, 1)
        [line] = result.stderr.strip().splitlines()
        assert "unexpected RuntimeError: disk on fire" in line and "--debug" in line
        log = migrated.folder / "out" / "logs" / "pdca-debug.log"
        assert "Traceback" in log.read_text() and "disk on fire" in log.read_text()
        shown = migrated("import", "customers", str(path), "--debug", **env)
        assert shown.returncode == 1 and "Traceback" in shown.stderr


class TestPrefectLoggerTracebacks:
    """Tracebacks Prefect's loggers would print (a locked database, an SMTP 451 after its
    retries) go to the debug log; stderr keeps the one-line message."""

    def _record(self, error: Exception):
        import logging

        try:
            raise error
        except type(error):
            return logging.LogRecord(
                "prefect.flow_runs", 40, __file__, 1, "run failed", None, sys.exc_info()
            )

    def test_traceback_goes_to_the_debug_log(self, tmp_path, monkeypatch) -> None:
        from pdca import cli as cli_module
        from pdca.settings import get_settings

        monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path))
        get_settings.cache_clear()
        try:
            record = self._record(RuntimeError("database is locked"))
            assert cli_module._NoTracebackForUserErrors().filter(record)
        finally:
            get_settings.cache_clear()
        assert record.exc_info is None and record.exc_text is None
        log = (tmp_path / "logs" / "pdca-debug.log").read_text()
        assert "Traceback" in log and "database is locked" in log

    def test_debug_keeps_the_traceback(self) -> None:
        from pdca import cli as cli_module

        quiet = cli_module._NoTracebackForUserErrors()
        quiet.debug = True
        record = self._record(RuntimeError("database is locked"))
        assert quiet.filter(record) and record.exc_info is not None
