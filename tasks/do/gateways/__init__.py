"""Do: channel gateways — one interface for every way dispatch sends a message.

One module per provider kind: `base` (the `Gateway` protocol, `OutboundMessage`,
`SendReceipt`, errors), `simulated`, `call_list`, `smtp`, `webhook`, `limits` (rate
limiting and retries) and `journal` (the simulated provider's durable journal, and its
bulk path). `gateway_for(channel, settings)` picks one per channel; `open_gateways` opens
a campaign's. The protocol, the webhook contract and the privacy rules are described in
`docs/gateways.md`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from tasks.common.campaigns import CampaignSpec
from tasks.do.gateways.base import (
    GATEWAY_REF_LENGTH,
    KEY_PATTERN,
    MAX_ERROR_LENGTH,
    MAX_KEY_LENGTH,
    SEND_CHANNELS,
    WEBHOOK_CHANNELS,
    Gateway,
    GatewayError,
    OutboundMessage,
    PermanentGatewayError,
    SendReceipt,
    TransientGatewayError,
    UnusableGatewayError,
    masked,
)
from tasks.do.gateways.call_list import CallListGateway
from tasks.do.gateways.journal import JournaledGateway
from tasks.do.gateways.limits import (
    CircuitBreaker,
    Limiter,
    RateLimitedGateway,
    RateLimiter,
    provider_receipts,
    retry_on_transient,
    send_with_retries,
)
from tasks.do.gateways.simulated import SimulatedGateway
from tasks.do.gateways.smtp import SmtpGateway
from tasks.do.gateways.webhook import TRANSIENT_STATUS, WebhookGateway

__all__ = [
    "GATEWAY_REF_LENGTH",
    "KEY_PATTERN",
    "MAX_ERROR_LENGTH",
    "MAX_KEY_LENGTH",
    "SEND_CHANNELS",
    "SIMULATED_OUTCOMES",
    "TRANSIENT_STATUS",
    "WEBHOOK_CHANNELS",
    "CallListGateway",
    "CircuitBreaker",
    "Gateway",
    "GatewayError",
    "JournaledGateway",
    "Limiter",
    "OutboundMessage",
    "PermanentGatewayError",
    "RateLimitedGateway",
    "RateLimiter",
    "SendReceipt",
    "SimulatedGateway",
    "SmtpGateway",
    "TransientGatewayError",
    "UnusableGatewayError",
    "WebhookGateway",
    "gateway_for",
    "masked",
    "open_gateways",
    "provider_receipts",
    "retry_on_transient",
    "send_with_retries",
]


def _secret(value: Any) -> Any:
    """A pydantic `SecretStr` unwrapped; anything else as it is."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _configured(
    mapping: Mapping[str, Any] | None, settings: object, name: str, channel: str
) -> Any:
    """A per-channel value: `mapping[channel]`, `mapping["PDCA_<NAME>_<CHANNEL>"]`, else the
    setting `<name>_<channel>` if `settings` has it; `None` when unset or empty."""
    value = None
    if mapping is not None and not isinstance(mapping, Mapping):
        raise TypeError(f"per-channel {name} values: expected a mapping, got {type(mapping)}")
    if mapping is not None:
        value = mapping.get(channel)
        if value is None:
            value = mapping.get(f"PDCA_{name.upper()}_{channel.upper()}")
    if value is None:
        value = getattr(settings, f"{name}_{channel}", None)
    value = _secret(value)
    return None if value is None or value == "" else value


def gateway_for(
    channel: str,
    settings: Any,
    webhook_urls: Mapping[str, str] | None = None,
    *,
    webhook_tokens: Mapping[str, str] | None = None,
    rate_limits: Mapping[str, float | str] | None = None,
    seed: int | None = None,
    outcomes: Mapping[str, tuple[float, float]] | None = None,
) -> Gateway:
    """The gateway for `channel`, from pdca's `Settings` and the per-channel mappings.

    - `email`: `SmtpGateway` when `settings.smtp_host` is set, else simulated;
    - `sms`, `im`, `app_push`: `WebhookGateway` when a URL is configured for the channel,
      else simulated;
    - `phone`: `CallListGateway`.

    Per-channel values (webhook URL, bearer token, rate limit in messages per second) are
    looked up by channel (`{"sms": url}`) or by environment name (`{"PDCA_WEBHOOK_URL_SMS":
    url}`), then in `settings.webhook_url_sms` and the like when those settings exist. A
    rate limit wraps a real gateway in `RateLimitedGateway` (burst: one second's worth);
    simulated gateways are never slowed down. They draw `outcomes` with `seed` and do not
    record keys (the outbox is the record).
    """
    if channel not in SEND_CHANNELS:
        raise ValueError(
            f"pdca sends nothing on channel {channel!r}; gateways exist for "
            + ", ".join(SEND_CHANNELS)
        )
    gateway: Gateway
    if channel == "phone":
        return CallListGateway(seed, outcomes, record=False)
    if channel == "email" and settings.smtp_host:
        gateway = SmtpGateway(
            settings.smtp_host,
            settings.smtp_port,
            user=settings.smtp_user,
            password=_secret(settings.smtp_password),
            starttls=settings.smtp_starttls,
            sender=settings.smtp_sender,
            allow_plain_auth=bool(getattr(settings, "smtp_allow_plain_auth", False)),
        )
    elif channel in WEBHOOK_CHANNELS and (
        url := _configured(webhook_urls, settings, "webhook_url", channel)
    ):
        gateway = WebhookGateway(
            url,
            channel,
            timeout=float(getattr(settings, "webhook_timeout", None) or 5.0),
            token=_configured(webhook_tokens, settings, "webhook_token", channel),
        )
    else:
        return SimulatedGateway(seed, outcomes, record=False)
    rate = _configured(rate_limits, settings, "rate_limit", channel)
    if rate is not None:
        per_second = float(rate)
        gateway = RateLimitedGateway(gateway, RateLimiter(per_second, math.ceil(per_second)))
    return gateway


SIMULATED_OUTCOMES = {
    "phone": (0.80, 0.35),
    "sms": (0.96, 0.05),
    "im": (0.92, 0.07),
    "app_push": (0.75, 0.03),
    "email": (0.88, 0.02),
}
"""Delivery and response rates the demo's simulated gateways draw (per channel)."""


def open_gateways(
    spec: CampaignSpec, settings: Any, engine: Engine, simulate_outcomes: bool
) -> dict[str, Gateway]:
    """One gateway per channel of `spec` that pdca sends on; simulated ones keep a durable
    journal of accepted keys (`JournaledGateway`) and, with `simulate_outcomes` (the
    demo), draw delivery and response (`SIMULATED_OUTCOMES`), seeded by the campaign."""
    seed = int.from_bytes(hashlib.sha256(spec.id.encode()).digest()[:4], "big")
    outcomes = SIMULATED_OUTCOMES if simulate_outcomes else None
    gateways: dict[str, Gateway] = {}
    for channel in spec.channels:
        if channel not in SEND_CHANNELS:
            continue
        gateway = gateway_for(channel, settings, seed=seed, outcomes=outcomes)
        if isinstance(gateway, SimulatedGateway):
            gateway = JournaledGateway(gateway, engine)
        gateways[channel] = gateway
    return gateways
