"""The schema migrates on both back ends and is seeded with the contract's channels."""

from sqlalchemy import text

from pdca.db import upgrade
from pdca.models import CHANNELS


class TestUpgrade:
    def test_seeds_channels(self, engine):
        with engine.connect() as conn:
            rows = conn.execute(text("select channel from channels")).scalars().all()
        assert sorted(rows) == sorted(CHANNELS)

    def test_upgrade_twice_is_a_no_op(self, db_url, engine):
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from channels")).scalar() == len(CHANNELS)
