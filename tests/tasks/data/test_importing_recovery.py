"""A failed import loses nothing already committed, and its rerun converges."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tasks.data import importing
from tasks.data.importing import import_feed

HEADER = (
    "customer_id,segment,region,credit_score,monthly_income,debt_ratio,industry,phone,"
    "email,marketing_consent,do_not_contact,created_at\n"
)


def customers_file(folder: Path, rows: int) -> Path:
    path = folder / "customers.csv"
    lines = [f"c{i:04d},sme,north,{600 + i},5000,0.3,retail,,,true,false,\n" for i in range(rows)]
    lines[3] = "c0003,sme,north,1200,5000,0.3,retail,,,true,false,\n"  # out of range
    path.write_text(HEADER + "".join(lines))
    return path


def table(conn, name: str, order: str) -> list[tuple]:
    return conn.execute(text(f"select * from {name} order by {order}")).all()


class TestCrashMidImport:
    def test_committed_chunks_stay_and_the_rerun_converges(self, engine, tmp_path, monkeypatch):
        path = customers_file(tmp_path, rows=10)
        real_load = importing.StagedLoader.load
        calls = {"n": 0}

        def crash_on_third_chunk(self, rows):
            calls["n"] += 1
            if calls["n"] == 3:
                raise ConnectionError("database went away")
            return real_load(self, rows)

        monkeypatch.setattr(importing.StagedLoader, "load", crash_on_third_chunk)
        with engine.connect() as conn, pytest.raises(ConnectionError):
            import_feed(conn, "customers", path, chunk_rows=3)
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from customers")).scalar() == 5
            status = conn.execute(text("select status, message from imports")).one()
        assert status[0] == "failed" and "database went away" in status[1]

        monkeypatch.setattr(importing.StagedLoader, "load", real_load)
        with engine.connect() as conn:
            result = import_feed(conn, "customers", path, chunk_rows=3)
            after_rerun = table(conn, "customers", "customer_id")
            quarantined = table(conn, "quarantine", "line")
        assert (result.loaded, result.quarantined) == (9, 1)
        assert len(after_rerun) == 9
        assert [(row.line, row.field) for row in quarantined] == [(5, "credit_score")]

        clean = tmp_path / "clean.db"
        from pdca.db import make_engine, upgrade

        upgrade(f"sqlite:///{clean}")
        reference = make_engine(f"sqlite:///{clean}")
        with reference.connect() as conn:
            import_feed(conn, "customers", path, chunk_rows=3)
            expected = table(conn, "customers", "customer_id")
        assert after_rerun == expected, "a rerun after a crash must equal an uninterrupted import"


class TestKilledImportIsMarkedInterrupted:
    def test_next_import_marks_the_dead_processes_row(self, engine, tmp_path):
        """A process that dies mid-import leaves `running`; the next import says so."""
        import subprocess
        import sys

        url = engine.url.render_as_string(hide_password=False)
        script = (
            "import os\n"
            "from pdca.db import make_engine\n"
            "from tasks.data.import_ledger import start_import\n"
            f"with make_engine({url!r}).connect() as conn:\n"
            "    start_import(conn, 'customers', '/data/customers.csv')\n"
            "os._exit(9)  # killed: no failure handler runs\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
        assert done.returncode == 9, done.stderr.decode()
        with engine.connect() as conn:
            assert conn.execute(text("select status from imports")).scalar_one() == "running"
            import_feed(conn, "customers", customers_file(tmp_path, rows=5))
            rows = conn.execute(
                text("select file, status, message from imports order by import_id")
            ).all()
        assert rows[0].status == "interrupted" and "ended" in rows[0].message
        assert rows[1].status == "loaded" and rows[1].message is None

    def test_a_live_import_is_left_running(self, engine, tmp_path):
        """Another import still running (here: this very process) is not touched."""
        from tasks.data.import_ledger import start_import

        with engine.connect() as conn:
            start_import(conn, "touches", "/data/touches.csv")
            import_feed(conn, "customers", customers_file(tmp_path, rows=5))
            statuses = conn.execute(text("select status from imports order by import_id"))
            assert statuses.scalars().all() == ["running", "loaded"]
