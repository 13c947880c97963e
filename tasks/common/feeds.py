"""The contract's input feeds: columns, keys, types and references, in one table.

Everything that imports, exports or validates a feed reads its shape from `FEEDS`, so a
column is declared once. Value rules (ranges, value sets) live in the feed's Great
Expectations suite in `expectations/`; what is here is what a rule engine cannot say:
how to parse a column and which loaded table a column must point into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # every command imports this table; only the feeds' frames need pandas
    import pandas as pd

Kind = Literal["str", "int", "float", "bool", "datetime", "date", "phone", "email"]
"""How a column is parsed; `phone` and `email` are text with the rules of `tasks.common.bounds`."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "str"
    required: bool = True


@dataclass(frozen=True)
class Reference:
    """`column` must name a row of `table.target` that is already loaded."""

    column: str
    table: str
    target: str


@dataclass(frozen=True)
class Feed:
    name: str
    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    references: tuple[Reference, ...] = ()
    timezone_from: str | None = None
    """Column naming the campaign whose time zone reads timestamps without offset."""
    occurred_at: str | None = None
    """The row's own timestamp, used to count a period's quarantined rows."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


def _feed(name: str, key: tuple[str, ...], *columns: Column, **options) -> Feed:
    return Feed(name=name, table=name, key=key, columns=columns, **options)


FEEDS: dict[str, Feed] = {
    feed.name: feed
    for feed in (
        _feed(
            "customers",
            ("customer_id",),
            Column("customer_id"),
            Column("segment"),
            Column("region", required=False),
            Column("credit_score", "int"),
            Column("monthly_income", "float", required=False),
            Column("debt_ratio", "float", required=False),
            Column("industry", required=False),
            Column("phone", "phone", required=False),
            Column("email", "email", required=False),
            Column("marketing_consent", "bool"),
            Column("do_not_contact", "bool"),
            Column("created_at", "datetime", required=False),
            occurred_at="created_at",
        ),
        _feed(
            "touches",
            ("touch_id",),
            Column("touch_id"),
            Column("campaign_id"),
            Column("customer_id"),
            Column("channel"),
            Column("variant"),
            Column("sent_at", "datetime"),
            Column("delivered", "bool"),
            Column("responded", "bool"),
            Column("cost", "float"),
            references=(
                Reference("campaign_id", "campaigns", "campaign_id"),
                Reference("customer_id", "customers", "customer_id"),
            ),
            timezone_from="campaign_id",
            occurred_at="sent_at",
        ),
        _feed(
            "applications",
            ("application_id",),
            Column("application_id"),
            Column("customer_id"),
            Column("campaign_id", required=False),
            Column("channel"),
            Column("applied_at", "datetime"),
            Column("product_code"),
            Column("amount_requested", "float"),
            references=(
                Reference("customer_id", "customers", "customer_id"),
                Reference("campaign_id", "campaigns", "campaign_id"),
            ),
            timezone_from="campaign_id",
            occurred_at="applied_at",
        ),
        _feed(
            "decisions",
            ("application_id",),
            Column("application_id"),
            Column("decided_at", "datetime"),
            Column("decision"),
            Column("reject_reason", required=False),
            Column("approved_amount", "float", required=False),
            Column("apr", "float", required=False),
            references=(Reference("application_id", "applications", "application_id"),),
            occurred_at="decided_at",
        ),
        _feed(
            "loans",
            ("loan_id",),
            Column("loan_id"),
            Column("application_id"),
            Column("disbursed_at", "datetime"),
            Column("amount", "float"),
            Column("apr", "float"),
            Column("term_months", "int"),
            references=(Reference("application_id", "applications", "application_id"),),
            occurred_at="disbursed_at",
        ),
        _feed(
            "repayments",
            ("loan_id", "as_of"),
            Column("loan_id"),
            Column("as_of", "date"),
            Column("dpd", "int"),
            Column("outstanding", "float"),
            references=(Reference("loan_id", "loans", "loan_id"),),
            occurred_at="as_of",
        ),
        _feed(
            "complaints",
            ("complaint_id",),
            Column("complaint_id"),
            Column("customer_id"),
            Column("campaign_id", required=False),
            Column("received_at", "datetime"),
            Column("category"),
            references=(
                Reference("customer_id", "customers", "customer_id"),
                Reference("campaign_id", "campaigns", "campaign_id"),
            ),
            timezone_from="campaign_id",
            occurred_at="received_at",
        ),
        _feed(
            "surveys",
            ("survey_id",),
            Column("survey_id"),
            Column("customer_id"),
            Column("campaign_id", required=False),
            Column("answered_at", "datetime"),
            Column("score", "int"),
            Column("comment", required=False),
            references=(
                Reference("customer_id", "customers", "customer_id"),
                Reference("campaign_id", "campaigns", "campaign_id"),
            ),
            timezone_from="campaign_id",
            occurred_at="answered_at",
        ),
    )
}

LOAD_ORDER: tuple[str, ...] = tuple(FEEDS)
"""The table feeds in the order they can be loaded: referenced tables first (a touch needs
its customer, a loan its application)."""

FEED_NAMES = (*FEEDS, "uci-bank")
"""Every name `pdca import` accepts, in the contract's order."""

NOT_CARRIED: dict[str, dict[str, tuple[str, ...]]] = {
    "uci-bank": {"applications": ("amount_requested",)},
}
"""Feed → table → the fields of that table its source cannot carry: the UCI file knows
that a client subscribed, not for how much (its product is a term deposit). The rows a
feed loads record it (`applications.source_feed`), and the suites' rules on such a field
apply only where `source_carries_<field>` is true, so a field missing because its feed
cannot carry it is no failure, while the same field missing from a feed that carries it
still is."""

SOURCE_COLUMN = "source_feed"
"""The column of a loaded row that names the feed that loaded it."""


def uncarried_fields(table: str) -> tuple[str, ...]:
    """The fields of `table` that some feed's source cannot carry, in a stable order."""
    fields = {field for tables in NOT_CARRIED.values() for field in tables.get(table, ())}
    return tuple(sorted(fields))


def with_carried_flags(frame: pd.DataFrame, table: str, sources: pd.Series | str) -> pd.DataFrame:
    """`frame` with one boolean column `source_carries_<field>` per `uncarried_fields(table)`:
    whether the row's source feed (`sources`: one feed name, or one per row; a missing name
    is a feed that carries every field) can carry that field."""
    import pandas as pd

    out = frame.copy()
    names = pd.Series(sources, index=frame.index) if isinstance(sources, str) else sources
    for field in uncarried_fields(table):
        lacking = [feed for feed, tables in NOT_CARRIED.items() if field in tables.get(table, ())]
        out[f"source_carries_{field}"] = (~names.isin(lacking)).to_numpy(dtype=bool)
    return out
