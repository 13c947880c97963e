"""The schema migrates on both back ends and is seeded with the contract's channels."""

from contextlib import closing

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pdca.db import make_engine, upgrade
from pdca.models import CHANNELS
from tasks.check.arrow_reads import open_adbc


class TestUpgrade:
    def test_seeds_channels(self, engine):
        with engine.connect() as conn:
            rows = conn.execute(text("select channel from channels")).scalars().all()
        assert sorted(rows) == sorted(CHANNELS)

    def test_upgrade_twice_is_a_no_op(self, db_url, engine):
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from channels")).scalar() == len(CHANNELS)


class TestPostgresSessions:
    """pdca's PostgreSQL sessions, SQLAlchemy's and the Arrow reader's, run without JIT
    (`pdca.db.POSTGRES_OPTIONS`: compiling the check's queries cost more than running
    them), and keep the session options a user's URL gives."""

    def test_no_jit_on_either_driver(self, db_url, engine):
        if engine.dialect.name != "postgresql":
            pytest.skip("a PostgreSQL setting")
        with engine.connect() as conn:
            assert conn.execute(text("show jit")).scalar_one() == "off"
            with closing(open_adbc(conn)) as arrow, closing(arrow.cursor()) as cursor:
                cursor.execute("select current_setting('jit')")
                assert cursor.fetchone() == ("off",)

    def test_the_urls_own_options_stay(self, db_url):
        if not db_url.startswith("postgresql"):
            pytest.skip("a PostgreSQL setting")
        url = make_url(db_url).update_query_dict({"options": "-c work_mem=64MB"})
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            with engine.connect() as conn:
                settings = [conn.execute(text(f"show {name}")).scalar_one() for name in NAMES]
        finally:
            engine.dispose()
        assert settings == ["64MB", "off"]


NAMES = ("work_mem", "jit")
