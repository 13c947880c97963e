"""All of pdca's settings in one place, read from `PDCA_*` environment variables.

Tasks never read the environment themselves: the CLI and the flows build one `Settings`
and pass down what each step needs, so a test can run any step with any settings.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout: `sql/`, `expectations/` and `reports/` are read from here."""


class Settings(BaseSettings):
    """pdca's configuration; every field can be set as `PDCA_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="PDCA_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/pdca.db",
        description="SQLAlchemy URL; a relative SQLite path is under the working directory.",
    )
    timezone: str = Field(
        default="UTC",
        description="Time zone of feed timestamps without offset that belong to no campaign.",
    )
    import_chunk_rows: int = Field(default=100_000, ge=1, description="Rows per import chunk.")
    timestamp_min: date = Field(
        default=date(1970, 1, 1),
        description="Earliest plausible day of a feed timestamp or date (UTC); older rows are "
        "quarantined.",
    )
    timestamp_max: date = Field(
        default=date(2100, 12, 31),
        description="Latest plausible day of a feed timestamp or date (UTC), included.",
    )
    import_max_field_chars: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Most characters in one feed field (and at most the column's own length); "
        "a longer field is quarantined.",
    )
    backfill_concurrency: int = Field(
        default=2,
        ge=1,
        description="Periods a backfill runs at once (each holds a database connection).",
    )
    attribution_window_days: int = Field(default=14, ge=1)
    ftp_rate: float = Field(default=0.03, ge=0, description="Funds transfer price, annual.")
    lgd: float = Field(default=0.6, ge=0, le=1, description="Loss given default.")
    quarantine_max_share: float = Field(
        default=0.01, ge=0, le=1, description="Quarantined share above which data quality fails."
    )
    dq_chunk_rows: int = Field(
        default=500_000,
        gt=0,
        description="Touches validated per Great Expectations run (consecutive weeks together).",
    )
    tolerance_warn: float = Field(default=0.05, ge=0, description="on_track band, ± share.")
    tolerance_fail: float = Field(default=0.15, ge=0, description="at_risk band, ± share.")
    anomaly_z: float = Field(default=3.0, gt=0, description="|z| from which a week is anomalous.")
    anomaly_min_volume: int = Field(
        default=200, ge=0, description="Least denominator volume for a week to raise an anomaly."
    )
    anomaly_window_weeks: int = Field(default=8, ge=2, description="Trailing weeks of baseline.")
    anomaly_min_weeks: int = Field(
        default=4, ge=2, description="Fewest trailing weeks with volume for a baseline."
    )
    experiment_alpha: float = Field(default=0.05, gt=0, lt=1, description="Test significance.")
    experiment_power: float = Field(default=0.8, gt=0, lt=1, description="Power for min sample.")
    experiment_mde: float = Field(
        default=0.2, gt=0, description="Minimum detectable effect, relative lift of the rate."
    )
    srm_alpha: float = Field(
        default=0.001, gt=0, lt=1, description="Sample-ratio-mismatch p below which a test is void."
    )
    experiment_min_members: int = Field(
        default=100,
        ge=1,
        description="Least members per arm before the sequential test may decide anything.",
    )
    experiment_cuped: bool = Field(
        default=True,
        description="CUPED variance reduction by applications before assignment, where it helps.",
    )
    experiment_cuped_days: int = Field(
        default=90, ge=1, description="Days before assignment whose applications are CUPED's X."
    )
    experiment_cuped_min_reduction: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="Least variance reduction for CUPED to be applied to a comparison.",
    )
    plan_objective: Literal["disbursed_amount", "roi"] = Field(
        default="disbursed_amount", description="What the budget split maximises."
    )
    plan_floor_share: float = Field(
        default=0.05, ge=0, lt=1, description="Least budget share per channel (keeps it measured)."
    )
    plan_min_history_touches: int = Field(
        default=200,
        ge=0,
        description="Least touches in a channel's or segment's history window for targets "
        "from its own rates; fewer: the campaign's, and the plan says so.",
    )
    plan_min_history_loans: int = Field(
        default=30,
        ge=0,
        description="Least seasoned loans in a channel's or segment's history window for its "
        "own overdue_rate_30 target; fewer: the campaign's.",
    )
    plan_min_history_delivered: int = Field(
        default=2_000,
        ge=0,
        description="Least delivered touches in a channel's or segment's history window for "
        "its own complaint_rate target (complaints are rare); fewer: the campaign's.",
    )
    output_dir: Path = Field(default=Path("var"), description="Reports, outbox, Data Docs.")
    server_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Loopback port of the local Prefect server (`pdca server start`) and its UI.",
    )
    server_home: Path | None = Field(
        default=None,
        description="The local Prefect server's PREFECT_HOME (its database, log and pid file); "
        "default: output_dir/prefect-server.",
    )
    dask_address: str | None = Field(
        default=None,
        description="A Dask scheduler (e.g. tcp://10.0.0.5:8786): the scheduled flows and the "
        "weekly review run their per-campaign work on its workers (`pip install pdca[dask]`); "
        "unset, the campaigns one after another in the flow's process.",
    )
    reports_url: str | None = Field(
        default=None,
        description="The address where output_dir is served (e.g. https://reports.example/pdca"
        "/): artifacts then link to reports and Data Docs; unset, they show the file path.",
    )
    currency: str = Field(default="CNY", description="The unit written after amounts.")
    locale: Literal["en", "zh-CN"] = Field(
        default="en",
        description="Language and number style of the weekly review, the CLI's summaries and "
        "every campaign whose spec sets no `locale` (its adjustment report, SOP, e-mail).",
    )
    webhook_url_sms: str | None = Field(default=None, description="SMS provider endpoint.")
    webhook_url_im: str | None = Field(default=None, description="IM provider endpoint.")
    webhook_url_app_push: str | None = Field(default=None, description="App push endpoint.")
    webhook_token_sms: SecretStr | None = None
    webhook_token_im: SecretStr | None = None
    webhook_token_app_push: SecretStr | None = None
    webhook_timeout: float = Field(default=5.0, gt=0, description="Seconds per request.")
    rate_limit_sms: float | None = Field(default=None, gt=0, description="Messages/s.")
    rate_limit_im: float | None = Field(default=None, gt=0)
    rate_limit_app_push: float | None = Field(default=None, gt=0)
    rate_limit_email: float | None = Field(default=None, gt=0)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_sender: str = "pdca@localhost"
    smtp_allow_plain_auth: bool = Field(
        default=False,
        description="Send the SMTP user and password over a connection without STARTTLS.",
    )
    act_roi_floor: float = Field(
        default=0.0,
        description="ROI below which a channel fails its floor (0: it does not earn its cost).",
    )
    act_retire_after_periods: int = Field(
        default=3, ge=1, description="Periods running below act_roi_floor before retire_channel."
    )
    act_reallocation_step: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Share of a failing channel's budget moved per reallocate_budget step.",
    )
    act_reallocation_metric: Literal["roi", "ltv_cac"] = Field(
        default="roi",
        description="What reallocate_budget moves budget by: the period's roi, or ltv_cac "
        "(the channel's customers' lifetime value over their acquisition cost).",
    )
    act_cac_ratio: float = Field(
        default=2.0,
        gt=1,
        description="A channel's CAC this many times the campaign's best channel's counts as high.",
    )
    act_min_channel_touches: int = Field(
        default=200,
        ge=1,
        description="Least touches of a channel in a period for its ROI/CAC to count as evidence.",
    )
    act_score_floor_step: int = Field(
        default=20, ge=1, le=600, description="Points tighten_admission raises min_credit_score by."
    )
    act_debt_ratio_step: float = Field(
        default=0.05, gt=0, description="How much tighten_admission lowers max_debt_ratio by."
    )
    act_min_seasoned_loans: int = Field(
        default=30,
        ge=1,
        description="Least seasoned loans in a scope for its overdue_rate_30 breach to act on.",
    )
    act_window_min_touches: int = Field(
        default=200,
        ge=1,
        description="Least delivered touches per send window to compare response rates.",
    )
    act_window_shift_minutes: int = Field(
        default=30, ge=1, le=180, description="Most minutes shift_window moves a window per step."
    )
    act_min_improvement: float = Field(
        default=0.05,
        ge=0,
        description="Least relative improvement of its metric a proposal's own what-if must "
        "show (overdue_rate_30 for tighten_admission, the moved budget's ROI for "
        "reallocate_budget, the window's response rate for shift_window), else it is not made.",
    )
    act_approval_timeout: int = Field(
        default=86_400,
        ge=1,
        description="Seconds an act run waits for a manager's decisions before proposals "
        "stay proposed.",
    )
    act_approval_poll_seconds: int = Field(
        default=10, ge=1, description="How often a paused act run looks for a decision."
    )
    notify_webhook_url: str | None = Field(
        default=None,
        description="Where the Automations of `pdca automations apply` send data-quality "
        "failures and proposals awaiting approval: an http(s) URL taking a JSON POST "
        "(text, subject, body), e.g. a Slack or Mattermost incoming webhook. Unset: the "
        "Automations fire but send nothing.",
    )
    notify_webhook_token: SecretStr | None = Field(
        default=None,
        description="Sent to the notification webhook as `Authorization: Bearer <token>`.",
    )
    notify_webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds the Prefect server waits for the webhook."
    )
    act_targeting_min_applications: int = Field(
        default=30,
        ge=1,
        description="Least applications for a segment/channel to be named by revise_targeting.",
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
