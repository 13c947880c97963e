"""Channel gateways: simulated draws, SMTP and webhook against real local servers, retries,
rate limiting, masking, and the choice of gateway per channel."""

from __future__ import annotations

import re
import threading
import time
import tracemalloc
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from prefect.states import Completed, Failed

from pdca.settings import Settings
from tasks.do.gateways import (
    CallListGateway,
    CircuitBreaker,
    Gateway,
    OutboundMessage,
    PermanentGatewayError,
    RateLimitedGateway,
    RateLimiter,
    SendReceipt,
    SimulatedGateway,
    SmtpGateway,
    TransientGatewayError,
    UnusableGatewayError,
    WebhookGateway,
    gateway_for,
    masked,
    provider_receipts,
    retry_on_transient,
    send_with_retries,
)
from tests.servers import (
    RecordedRequest,
    free_port,
    http_server,
    json_response,
    smtp_server,
    text_response,
)

PHONE = "+86 13800000001"
SECRET = "s3cret-Pa55"


def message(
    key: str = "b1-c1-sms",
    *,
    channel: str = "sms",
    to: str | None = PHONE,
    subject: str | None = None,
    body: str = "Spring offer: 7.2% APR. Borrow rationally.",
    html: str | None = None,
) -> OutboundMessage:
    return OutboundMessage(key, channel, "c1", to, subject, body, html, "A")


def messages(count: int, channel: str = "sms", prefix: str = "b1") -> list[OutboundMessage]:
    return [message(f"{prefix}-c{i:06d}-{channel}", channel=channel) for i in range(count)]


def email(key: str, to: str, html: str | None = None) -> OutboundMessage:
    return message(key, channel="email", to=to, subject="Your spring offer", html=html)


def keys(items: Sequence[OutboundMessage | SendReceipt]) -> list[str]:
    return [item.idempotency_key for item in items]


def assert_no_leak(text: str, *secrets: str) -> None:
    """None of `secrets` (a password, a token, an address) appears in `text`."""
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"{leaked} leaked into: {text!r}"


class TestMasked:
    @pytest.mark.parametrize(
        ("address", "expected"),
        [
            ("+86 13800000001", "+86 138****0001"),
            ("+86-138-0000-0001", "+86 138****0001"),
            ("13800000001", "138****0001"),
            ("+8613800000001", "+861****0001"),
            ("+1 (415) 555-0100", "+1 41****0100"),
            ("alice@example.com", "a***@example.com"),
            ("@example.com", "***@example.com"),
            ("device-token-0123456789", "de****89"),
            ("12345", "****"),
        ],
    )
    def test_success(self, address, expected):
        assert masked(address) == expected

    def test_message_repr_masks_the_address_and_hides_the_texts(self):
        text = repr(message(body="Dear Ms Wang, ...", html="<p>Dear Ms Wang</p>"))
        assert "+86 138****0001" in text
        assert_no_leak(text, PHONE, "13800000001", "Wang")

    def test_null_address(self):
        assert message(to=None).masked_to is None
        assert "to=None" in repr(message(to=None))


class TestOutboundMessage:
    @pytest.mark.parametrize(
        "key", ["b1-c000001-sms", "sme-spring:20260316:noon:C-01:email", "客户-1", "a" * 200]
    )
    def test_success(self, key):
        assert message(key).idempotency_key == key

    @pytest.mark.parametrize("key", ["", "has space", "a" * 201, "tab\there", "line\nbreak"])
    def test_failure(self, key):
        with pytest.raises(ValueError, match="idempotency key"):
            OutboundMessage(key, "sms", "c1", PHONE, None, "body", None, "A")


class TestSimulatedGateway:
    def test_accepts_everything_in_order(self):
        batch = messages(3)
        gateway = SimulatedGateway()
        receipts = gateway.send_batch(batch)
        assert isinstance(gateway, Gateway)
        assert [(r.accepted, r.gateway_ref, r.delivered) for r in receipts] == [
            (True, f"sim-{key}", None) for key in keys(batch)
        ]
        assert gateway.sent == keys(batch)
        assert gateway.counts["sms", "sent"] == 3

    def test_same_seed_draws_the_same_outcomes_whatever_the_batching(self):
        batch = messages(1_000)
        outcomes = {"sms": (0.8, 0.3)}
        whole = SimulatedGateway(seed=7, outcomes=outcomes).send_batch(batch)
        rerun = SimulatedGateway(seed=7, outcomes=outcomes)
        pieces = [r for i in range(0, 1_000, 7) for r in rerun.send_batch(batch[::-1][i : i + 7])]
        by_key = {r.idempotency_key: (r.delivered, r.responded) for r in pieces}
        assert [(r.delivered, r.responded) for r in whole] == [by_key[k] for k in keys(batch)]

    def test_a_key_draws_what_its_message_draws(self):
        """`draw_key` (the bulk path's draw) is the draw of the message with that key."""
        gateway = SimulatedGateway(seed=7, outcomes={"sms": (0.5, 0.5)})
        batch = messages(200)
        drawn = [gateway.draw_key(m.channel, m.idempotency_key) for m in batch]
        assert drawn == [(r.delivered, r.responded) for r in gateway.send_batch(batch)]
        assert {delivered for delivered, _ in drawn} == {True, False}

    def test_another_seed_draws_other_outcomes(self):
        batch = messages(1_000)
        first = SimulatedGateway(seed=1, outcomes={"sms": (0.5, 0.5)}).send_batch(batch)
        second = SimulatedGateway(seed=2, outcomes={"sms": (0.5, 0.5)}).send_batch(batch)
        assert [r.delivered for r in first] != [r.delivered for r in second]

    def test_rates_on_10000_messages(self):
        gateway = SimulatedGateway(seed=42, outcomes={"sms": (0.9, 0.2)})
        receipts = gateway.send_batch(messages(10_000))
        delivered = sum(r.delivered for r in receipts)
        responded = sum(r.responded for r in receipts)
        assert all(r.delivered for r in receipts if r.responded), "responded but not delivered"
        # binomial standard deviations: 30 deliveries, 0.0045 of the response rate
        assert abs(delivered - 9_000) < 120, f"delivered {delivered} of 10,000 at rate 0.9"
        assert abs(responded / delivered - 0.2) < 0.018, f"response rate {responded / delivered}"
        assert (gateway.counts["sms", "delivered"], gateway.counts["sms", "responded"]) == (
            delivered,
            responded,
        )

    def test_channel_without_rates_draws_nothing(self):
        gateway = SimulatedGateway(seed=1, outcomes={"sms": (1.0, 1.0)})
        [receipt] = gateway.send_batch([message("b1-c1-im", channel="im")])
        assert (receipt.accepted, receipt.delivered, receipt.responded) == (True, None, None)

    @pytest.mark.parametrize("rates", [(1.2, 0.1), (0.5, -0.1), (0.5,)])
    def test_bad_rates(self, rates):
        with pytest.raises(ValueError, match="outcomes"):
            SimulatedGateway(outcomes={"sms": rates})

    def test_without_recording_memory_stays_flat(self):
        gateway = SimulatedGateway(seed=1, outcomes={"sms": (0.9, 0.1)}, record=False)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for start in range(0, 20_000, 1_000):
                gateway.send_batch(messages(1_000, prefix=f"b{start}"))
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert gateway.sent == []
        assert gateway.counts["sms", "sent"] == 20_000
        assert grown < 200_000, f"{grown} bytes kept after 20,000 messages"

    def test_long_key_reference_fits_the_outbox(self):
        [receipt] = SimulatedGateway().send_batch([message("k" * 200)])
        assert receipt.gateway_ref.startswith("sim-") and len(receipt.gateway_ref) <= 128

    def test_call_list(self):
        [receipt] = CallListGateway().send_batch([message("b1-c1-phone", channel="phone")])
        assert (receipt.accepted, receipt.gateway_ref) == (True, "call-b1-c1-phone")


class TestSmtpGateway:
    def test_text_and_multipart_over_one_connection(self):
        batch = [
            email("b1-c1-email", "alice@example.com"),
            email("b1-c2-email", "bob@example.org", html="<p>Spring offer</p>"),
        ]
        with smtp_server() as server:
            gateway = SmtpGateway(server.host, server.port, sender="PDCA <offers@bank.example>")
            receipts = gateway.send_batch(batch)
        assert [(r.accepted, r.gateway_ref) for r in receipts] == [
            (True, "<b1-c1-email@bank.example>"),
            (True, "<b1-c2-email@bank.example>"),
        ]
        plain, multipart = (mail.message for mail in server.messages)
        assert [mail.rcpt_tos for mail in server.messages] == [
            ["alice@example.com"],
            ["bob@example.org"],
        ]
        assert {mail.mail_from for mail in server.messages} == {"offers@bank.example"}
        assert len({mail.peer for mail in server.messages}) == 1, "one connection per batch"
        assert plain["Message-ID"] == "<b1-c1-email@bank.example>"
        assert plain["Subject"] == "Your spring offer"
        assert plain.get_content_type() == "text/plain"
        assert "Borrow rationally" in plain.get_content()
        assert multipart.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in multipart.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        assert multipart.get_body(("html",)).get_content().strip() == "<p>Spring offer</p>"

    def test_login_and_no_secret_in_the_message(self):
        with smtp_server(credentials=("pdca", SECRET)) as server:
            gateway = SmtpGateway(
                server.host, server.port, user="pdca", password=SECRET, allow_plain_auth=True
            )
            [receipt] = gateway.send_batch([email("b1-c1-email", "alice@example.com")])
        assert receipt.accepted
        assert server.logins == [("pdca", SECRET)]
        assert server.messages[0].login == "pdca"
        assert_no_leak(server.messages[0].data.decode(), SECRET)
        assert_no_leak(repr(gateway), SECRET)

    def test_a_password_over_a_plain_connection_is_refused(self):
        """No STARTTLS and no explicit allowance: nothing is sent, the channel's sends wait
        (dispatch defers them: the messages are fine, the settings are not)."""
        with smtp_server(credentials=("pdca", SECRET)) as server:
            gateway = SmtpGateway(server.host, server.port, user="pdca", password=SECRET)
            message = email("b1-c1-email", "alice@example.com")
            with pytest.raises(UnusableGatewayError, match="plain connection") as caught:
                gateway.send_batch([message])
            breaker = CircuitBreaker()
            [receipt] = provider_receipts(gateway, [message], breaker)
        assert_no_leak(str(caught.value), SECRET)
        assert "PDCA_SMTP_ALLOW_PLAIN_AUTH" in str(caught.value)
        assert server.logins == [] and server.messages == []
        assert not receipt.accepted and receipt.retryable and "plain connection" in receipt.error
        assert breaker.open, "no retry: the settings must change first"

    def test_starttls_then_login(self):
        with smtp_server(tls=True, credentials=("pdca", SECRET)) as server:
            gateway = SmtpGateway(
                server.host,
                server.port,
                user="pdca",
                password=SECRET,
                starttls=True,
                ssl_context=server.client_context,
            )
            [receipt] = gateway.send_batch([email("b1-c1-email", "alice@example.com")])
        assert receipt.accepted
        assert (server.logins, server.messages[0].login) == ([("pdca", SECRET)], "pdca")

    @pytest.mark.parametrize("starttls", [True, False])
    def test_tls_problems_are_permanent(self, starttls):
        """An untrusted certificate, or a server that requires TLS when it is off."""
        with smtp_server(tls=True) as server:
            gateway = SmtpGateway(server.host, server.port, starttls=starttls)
            with pytest.raises(PermanentGatewayError):
                gateway.send_batch([email("b1-c1-email", "alice@example.com")])
        assert server.messages == []

    def test_wrong_password_is_permanent_and_not_shown(self):
        with smtp_server(credentials=("pdca", SECRET)) as server:
            gateway = SmtpGateway(
                server.host, server.port, user="pdca", password="wrong-pw", allow_plain_auth=True
            )
            with pytest.raises(PermanentGatewayError, match="login refused") as caught:
                gateway.send_batch([email("b1-c1-email", "alice@example.com")])
        assert_no_leak(str(caught.value), "wrong-pw")
        assert server.messages == []

    @pytest.mark.parametrize(("code", "retryable"), [("550 5.1.1", False), ("450 4.2.1", True)])
    def test_refused_recipient_fails_only_its_message(self, code, retryable):
        batch = [
            email("b1-c1-email", "alice@example.com"),
            email("b1-c2-email", "nobody@example.com"),
            email("b1-c3-email", "carol@example.com"),
        ]
        with smtp_server(refuse={"nobody@example.com"}, refuse_code=code) as server:
            receipts = SmtpGateway(server.host, server.port).send_batch(batch)
        assert [r.accepted for r in receipts] == [True, False, True]
        assert (receipts[1].retryable, receipts[1].gateway_ref) == (retryable, None)
        assert code[:3] in receipts[1].error and "n***@example.com" in receipts[1].error
        assert_no_leak(receipts[1].error, "nobody@example.com")
        assert [mail.rcpt_tos for mail in server.messages] == [
            ["alice@example.com"],
            ["carol@example.com"],
        ]

    def test_message_without_address(self):
        with smtp_server() as server:
            receipts = SmtpGateway(server.host, server.port).send_batch(
                [email("b1-c1-email", "alice@example.com"), message("b1-c2-email", to=None)]
            )
        assert [(r.accepted, r.error) for r in receipts] == [
            (True, None),
            (False, "no e-mail address"),
        ]

    def test_server_down_is_transient(self):
        gateway = SmtpGateway("127.0.0.1", free_port(), password=SECRET, timeout=2)
        with pytest.raises(TransientGatewayError, match="cannot connect") as caught:
            gateway.send_batch([email("b1-c1-email", "alice@example.com")])
        assert_no_leak(str(caught.value), SECRET, "alice@example.com")

    def test_server_hanging_up_mid_batch_keeps_the_accepted_ones(self):
        batch = [
            email("b1-c1-email", "alice@example.com"),
            email("b1-c2-email", "crash@example.com"),
            email("b1-c3-email", "carol@example.com"),
        ]
        with smtp_server(drop={"crash@example.com"}) as server:
            gateway = SmtpGateway(server.host, server.port, timeout=5)
            receipts = gateway.send_batch(batch)
            with pytest.raises(TransientGatewayError, match="connection lost"):
                gateway.send_batch(batch[1:])
        assert [(r.accepted, r.retryable) for r in receipts] == [
            (True, False),
            (False, True),
            (False, True),
        ]
        assert [mail.rcpt_tos for mail in server.messages] == [["alice@example.com"]]

    @pytest.mark.parametrize(
        ("key", "expected"),
        [
            ("b1-c1-email", r"<b1-c1-email@bank\.example>"),
            (
                "sme:20260316:noon:C1:email",
                r"<sme\.20260316\.noon\.C1\.email\.[0-9a-f]{16}@bank\.example>",
            ),
            ("a..b", r"<a\.b\.[0-9a-f]{16}@bank\.example>"),
            ("客户", r"<[0-9a-f]{16}@bank\.example>"),
            ("x" * 200, r"<x{40}\.[0-9a-f]{16}@bank\.example>"),
        ],
    )
    def test_message_id_is_derived_from_the_key(self, key, expected):
        gateway = SmtpGateway("unused", sender="Offers <offers@bank.example>")
        assert re.fullmatch(expected, gateway.message_id(key))
        assert gateway.message_id(key) == gateway.message_id(key)
        assert gateway.message_id(key) != gateway.message_id(key + "2")


def accept_all(request: RecordedRequest):
    """A provider that accepts every message of the request."""
    sent = [item["idempotency_key"] for item in request.json()["messages"]]
    receipts = [{"idempotency_key": k, "accepted": True, "gateway_ref": f"p-{k}"} for k in sent]
    return json_response({"receipts": receipts})


def failing_first(count: int, status: int = 503, headers: dict[str, str] | None = None):
    """A provider that answers `status` to the first `count` requests, then accepts."""
    seen = []

    def respond(request: RecordedRequest):
        seen.append(request)
        if len(seen) <= count:
            return text_response("busy, try later", status, headers)
        return accept_all(request)

    return respond


def accepting_first(count: int):
    """A provider that accepts the first `count` requests, then answers 503."""
    seen = []

    def respond(request: RecordedRequest):
        seen.append(request)
        return accept_all(request) if len(seen) <= count else text_response("down", 503)

    return respond


class TestWebhookGateway:
    def test_request_and_receipts(self):
        batch = messages(3)
        with (
            http_server(accept_all) as server,
            WebhookGateway(server.url + "/send", "sms", token=SECRET) as gateway,
        ):
            receipts = gateway.send_batch(batch)
        [request] = server.requests
        assert (request.method, request.path) == ("POST", "/send")
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        assert request.headers["idempotency-key"] == WebhookGateway.batch_key(batch)
        body = request.json()
        assert body["channel"] == "sms"
        assert [item["idempotency_key"] for item in body["messages"]] == keys(batch)
        assert body["messages"][0]["to"] == PHONE
        assert "customer_id" not in body["messages"][0], "the provider gets no customer id"
        assert [(r.accepted, r.gateway_ref) for r in receipts] == [
            (True, f"p-{key}") for key in keys(batch)
        ]
        assert_no_leak(repr(gateway), SECRET)

    def test_batches_of_max_batch(self):
        batch = messages(5)
        with (
            http_server(accept_all) as server,
            WebhookGateway(server.url, "sms", max_batch=2) as gateway,
        ):
            receipts = gateway.send_batch(batch)
        assert [len(r.json()["messages"]) for r in server.requests] == [2, 2, 1]
        assert keys(receipts) == keys(batch) and all(r.accepted for r in receipts)

    def test_receipts_matched_by_key_refused_and_missing(self):
        batch = messages(3)

        def respond(request: RecordedRequest):
            first, second, _ = (item["idempotency_key"] for item in request.json()["messages"])
            return json_response(
                [
                    {"idempotency_key": second, "accepted": False, "error": f"bad number {PHONE}"},
                    {"idempotency_key": first, "accepted": True, "gateway_ref": 17},
                ]
            )

        with http_server(respond) as server, WebhookGateway(server.url, "sms") as gateway:
            first, second, third = gateway.send_batch(batch)
        assert (first.accepted, first.gateway_ref) == (True, "17")
        assert (second.accepted, second.retryable, second.error) == (
            False,
            False,
            "bad number +86 138****0001",
        )
        assert (third.accepted, third.retryable) == (False, True), "no receipt: send again"

    def test_503_then_accept_succeeds_after_retries_with_the_same_key(self):
        batch = messages(3)
        with http_server(failing_first(2)) as server, WebhookGateway(server.url, "sms") as gateway:
            receipts = send_with_retries(gateway, batch, attempts=3, base_delay=0.01)
        assert all(r.accepted for r in receipts)
        assert len(server.requests) == 3
        assert {r.headers["idempotency-key"] for r in server.requests} == {
            WebhookGateway.batch_key(batch)
        }
        assert {
            tuple(i["idempotency_key"] for i in r.json()["messages"]) for r in server.requests
        } == {tuple(keys(batch))}

    def test_503_every_time_gives_up_after_the_attempts(self):
        with (
            http_server(failing_first(99)) as server,
            WebhookGateway(server.url, "sms") as gateway,
            pytest.raises(TransientGatewayError, match="HTTP 503"),
        ):
            send_with_retries(gateway, messages(2), attempts=3, base_delay=0.01)
        assert len(server.requests) == 3

    def test_400_is_permanent_and_not_retried(self):
        def respond(request: RecordedRequest):
            echoed = f"invalid request from {request.headers['authorization']} for {PHONE}"
            return text_response(echoed, 400)

        with (
            http_server(respond) as server,
            WebhookGateway(server.url + "?key=q-secret", "sms", token=SECRET) as gateway,
            pytest.raises(PermanentGatewayError, match="HTTP 400") as caught,
        ):
            send_with_retries(gateway, messages(2), attempts=3, base_delay=0.01)
        assert len(server.requests) == 1
        assert_no_leak(str(caught.value), SECRET, "q-secret", PHONE)

    def test_429_honours_retry_after(self):
        slept = []
        with (
            http_server(failing_first(1, 429, {"Retry-After": "2"})) as server,
            WebhookGateway(server.url, "sms") as gateway,
        ):
            receipts = send_with_retries(gateway, messages(1), base_delay=0.01, sleep=slept.append)
        assert receipts[0].accepted
        assert slept == [2.0]

    def test_timeout_is_transient(self):
        def hang(request: RecordedRequest):
            server.release.wait(5)
            return accept_all(request)

        with http_server(hang) as server, WebhookGateway(server.url, "sms", timeout=0.2) as gateway:
            started = time.monotonic()
            with pytest.raises(TransientGatewayError, match=r"no answer within 0\.2 s"):
                gateway.send_batch(messages(1))
            assert time.monotonic() - started < 3

    def test_connection_refused_is_transient(self):
        with (
            WebhookGateway(f"http://127.0.0.1:{free_port()}/", "sms", timeout=2) as gateway,
            pytest.raises(TransientGatewayError, match="ConnectError"),
        ):
            gateway.send_batch(messages(1))

    def test_a_later_batch_failing_keeps_the_accepted_ones(self):
        batch = messages(4)
        with (
            http_server(accepting_first(1)) as server,
            WebhookGateway(server.url, "sms", max_batch=2) as gateway,
        ):
            receipts = gateway.send_batch(batch)
        assert [(r.accepted, r.retryable) for r in receipts] == [
            (True, False),
            (True, False),
            (False, True),
            (False, True),
        ]

    def test_empty_2xx_accepts_and_non_json_2xx_is_permanent(self):
        with (
            http_server(lambda r: (202, {}, b"")) as server,
            WebhookGateway(server.url, "im") as gateway,
        ):
            assert [(r.accepted, r.gateway_ref) for r in gateway.send_batch(messages(2))] == [
                (True, None),
                (True, None),
            ]
        with (
            http_server(lambda r: text_response("OK", 200)) as server,
            WebhookGateway(server.url, "im") as gateway,
            pytest.raises(PermanentGatewayError, match="not JSON"),
        ):
            gateway.send_batch(messages(1))


class FlakyGateway:
    """Call k raises `script[k]` (None: answers normally; past the script: answers
    normally); refuses the `refuse_once` keys once, retryably. Records each call's keys."""

    name = "flaky"

    def __init__(
        self, script: Sequence[Exception | None] = (), refuse_once: Sequence[str] = ()
    ) -> None:
        self.script = list(script)
        self.refuse_once = set(refuse_once)
        self.calls: list[list[str]] = []

    def send_batch(self, batch: Sequence[OutboundMessage]) -> list[SendReceipt]:
        self.calls.append(keys(batch))
        failure = self.script.pop(0) if self.script else None
        if failure is not None:
            raise failure
        receipts = []
        for item in batch:
            refused = item.idempotency_key in self.refuse_once
            self.refuse_once.discard(item.idempotency_key)
            receipts.append(SendReceipt(item.idempotency_key, not refused, None, retryable=refused))
        return receipts

    def close(self) -> None:
        pass


class TestSendWithRetries:
    def test_exponential_backoff(self):
        slept = []
        gateway = FlakyGateway([TransientGatewayError("503")] * 3)
        receipts = send_with_retries(gateway, messages(2), attempts=4, sleep=slept.append)
        assert all(r.accepted for r in receipts)
        assert slept == [0.5, 1.0, 2.0]
        assert len(gateway.calls) == 4

    def test_gives_up_after_attempts(self):
        gateway = FlakyGateway([TransientGatewayError(f"try {i}") for i in range(5)])
        with pytest.raises(TransientGatewayError, match="try 2"):
            send_with_retries(gateway, messages(2), attempts=3, sleep=lambda s: None)
        assert len(gateway.calls) == 3

    def test_permanent_is_not_retried(self):
        gateway = FlakyGateway([PermanentGatewayError("400")])
        with pytest.raises(PermanentGatewayError):
            send_with_retries(gateway, messages(2), sleep=lambda s: None)
        assert len(gateway.calls) == 1

    def test_only_retryable_refusals_are_sent_again(self):
        batch = messages(3)
        gateway = FlakyGateway(refuse_once=[batch[1].idempotency_key])
        receipts = send_with_retries(gateway, batch, sleep=lambda s: None)
        assert gateway.calls == [keys(batch), [batch[1].idempotency_key]]
        assert keys(receipts) == keys(batch) and all(r.accepted for r in receipts)

    def test_transient_after_a_partial_success_returns_receipts(self):
        batch = messages(2)
        gateway = FlakyGateway(
            [None, TransientGatewayError("gone")], refuse_once=[batch[0].idempotency_key]
        )
        receipts = send_with_retries(gateway, batch, attempts=2, sleep=lambda s: None)
        assert [(r.accepted, r.retryable, r.error) for r in receipts] == [
            (False, True, "gone"),
            (True, False, None),
        ]

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="attempts"):
            send_with_retries(FlakyGateway(), messages(1), attempts=0)
        with pytest.raises(ValueError, match="repeat"):
            send_with_retries(FlakyGateway(), messages(1) * 2)


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures_across_calls(self):
        """One breaker per channel for the run: the failures of one part count towards
        the next; once open, the provider is not called again."""
        breaker = CircuitBreaker(threshold=3)
        down = [TransientGatewayError("503")] * 10
        gateway = FlakyGateway(down)
        with pytest.raises(TransientGatewayError):
            send_with_retries(
                gateway, messages(2), attempts=2, sleep=lambda s: None, breaker=breaker
            )
        assert len(gateway.calls) == 2 and not breaker.open
        receipts = provider_receipts(gateway, messages(2), breaker)
        assert len(gateway.calls) == 3 and breaker.open and breaker.reason == "503"
        assert all(not r.accepted and r.retryable and r.error == "503" for r in receipts)
        receipts = provider_receipts(gateway, messages(1), breaker)
        assert len(gateway.calls) == 3, "an open breaker does not call the provider"
        assert receipts[0].retryable and "kept failing: 503" in receipts[0].error

    def test_an_accepted_message_starts_the_count_again(self):
        breaker = CircuitBreaker(threshold=2)
        gateway = FlakyGateway([TransientGatewayError("503"), None] * 2)
        for _ in range(2):  # each: one failure, then accepted on the retry
            receipts = provider_receipts(gateway, messages(1), breaker)
            assert receipts[0].accepted
        assert len(gateway.calls) == 4 and not breaker.open and breaker.failures == 0

    def test_refused_for_now_counts_as_a_failure(self):
        breaker = CircuitBreaker(threshold=2)
        batch = messages(1)

        class Busy(FlakyGateway):
            def send_batch(self, batch):
                self.calls.append(keys(batch))
                return [
                    SendReceipt(m.idempotency_key, False, None, error="busy", retryable=True)
                    for m in batch
                ]

        gateway = Busy()
        receipts = send_with_retries(
            gateway, batch, attempts=5, sleep=lambda s: None, breaker=breaker
        )
        assert len(gateway.calls) == 2 and breaker.open
        assert receipts[0].retryable and breaker.reason == "1 messages refused for now: busy"

    def test_permanent_fails_and_anything_unexpected_defers(self):
        permanent = provider_receipts(
            FlakyGateway([PermanentGatewayError("HTTP 302")]), messages(2), CircuitBreaker()
        )
        assert all(not r.accepted and not r.retryable for r in permanent)
        odd = provider_receipts(
            FlakyGateway([KeyError("receipts")]), messages(2), breaker := CircuitBreaker()
        )
        assert all(r.retryable and "unexpected KeyError" in r.error for r in odd)
        assert breaker.failures == 1


class TestRetryOnTransient:
    @pytest.mark.parametrize(
        ("state", "expected"),
        [
            (Failed(data=TransientGatewayError("503")), True),
            (Failed(data=PermanentGatewayError("400")), False),
            (Failed(data=RuntimeError("bug")), False),
            (Completed(data=[]), False),
        ],
    )
    def test_retry_condition(self, state, expected):
        assert retry_on_transient(None, None, state) is expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestRateLimiter:
    def test_burst_then_steady_rate(self):
        clock = FakeClock()
        limiter = RateLimiter(100, 10, clock=clock, sleep=clock.sleep)
        for _ in range(50):
            limiter.acquire()
        assert len(clock.slept) == 40, "the first 10 come from the burst"
        assert sum(clock.slept) == pytest.approx(0.4)

    def test_idle_time_refills_up_to_the_burst(self):
        clock = FakeClock()
        limiter = RateLimiter(10, 5, clock=clock, sleep=clock.sleep)
        limiter.acquire(5)
        clock.now += 60
        assert limiter.acquire(5) == 0.0
        assert limiter.acquire(1) == pytest.approx(0.1)

    def test_more_than_the_burst_at_once(self):
        clock = FakeClock()
        limiter = RateLimiter(100, 10, clock=clock, sleep=clock.sleep)
        assert limiter.acquire(50) == pytest.approx(0.4)

    def test_real_time(self):
        limiter = RateLimiter(100, 10)
        started = time.monotonic()
        for _ in range(50):
            limiter.acquire()
        assert time.monotonic() - started >= 0.35

    def test_threads_share_the_rate(self):
        limiter = RateLimiter(100, 10)

        def take() -> None:
            for _ in range(10):
                limiter.acquire()

        threads = [threading.Thread(target=take) for _ in range(5)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started >= 0.35

    @pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (-1, 1), (1, 0)])
    def test_bad_arguments(self, per_second, burst):
        with pytest.raises(ValueError):
            RateLimiter(per_second, burst)


class RecordingLimiter:
    burst = 4

    def __init__(self) -> None:
        self.acquired: list[int] = []

    def acquire(self, n: int = 1) -> None:
        self.acquired.append(n)


class TestRateLimitedGateway:
    def test_slices_of_the_burst(self):
        inner, limiter = SimulatedGateway(), RecordingLimiter()
        batch = messages(10)
        receipts = RateLimitedGateway(inner, limiter).send_batch(batch)
        assert limiter.acquired == [4, 4, 2]
        assert keys(receipts) == keys(batch) and inner.sent == keys(batch)

    def test_a_later_slice_failing_keeps_the_accepted_ones(self):
        inner = FlakyGateway([None, TransientGatewayError("x")])
        receipts = RateLimitedGateway(inner, RecordingLimiter()).send_batch(messages(6))
        assert [r.accepted for r in receipts] == [True] * 4 + [False] * 2
        assert all(r.retryable for r in receipts[4:])

    def test_first_slice_failing_raises(self):
        inner = FlakyGateway([TransientGatewayError("down")])
        with pytest.raises(TransientGatewayError, match="down"):
            RateLimitedGateway(inner, RecordingLimiter()).send_batch(messages(6))


class TestGatewayFor:
    def settings(self, **values) -> Settings:
        return Settings(_env_file=None, **{"smtp_host": None, **values})

    def test_defaults_are_simulated(self):
        settings = self.settings()
        kinds = {
            channel: type(gateway_for(channel, settings))
            for channel in ["email", "sms", "im", "app_push", "phone"]
        }
        assert kinds == {
            "email": SimulatedGateway,
            "sms": SimulatedGateway,
            "im": SimulatedGateway,
            "app_push": SimulatedGateway,
            "phone": CallListGateway,
        }

    def test_smtp_when_a_host_is_set(self):
        settings = self.settings(smtp_host="mail.bank.example", smtp_port=587, smtp_password=SECRET)
        gateway = gateway_for("email", settings)
        assert isinstance(gateway, SmtpGateway)
        assert (gateway.host, gateway.port) == ("mail.bank.example", 587)
        assert_no_leak(repr(gateway), SECRET)

    @pytest.mark.parametrize(
        "urls",
        [
            {"sms": "https://sms.example/v1/send"},
            {"PDCA_WEBHOOK_URL_SMS": "https://sms.example/v1/send"},
        ],
    )
    def test_webhook_when_a_url_is_configured(self, urls):
        with gateway_for("sms", self.settings(), urls) as gateway:
            assert isinstance(gateway, WebhookGateway)
            assert (gateway.channel, gateway.endpoint) == ("sms", "https://sms.example/v1/send")
        assert isinstance(gateway_for("im", self.settings(), urls), SimulatedGateway)

    def test_webhook_from_settings_attributes(self):
        settings = SimpleNamespace(smtp_host=None, webhook_url_app_push="https://push.example/")
        with gateway_for("app_push", settings) as gateway:
            assert isinstance(gateway, WebhookGateway)

    def test_rate_limit_wraps_real_gateways_only(self):
        urls, limits = {"sms": "https://sms.example/"}, {"PDCA_RATE_LIMIT_SMS": "20", "im": 5}
        with gateway_for("sms", self.settings(), urls, rate_limits=limits) as gateway:
            assert isinstance(gateway, RateLimitedGateway)
            assert isinstance(gateway.inner, WebhookGateway)
            assert (gateway.limiter.per_second, gateway.limiter.burst) == (20.0, 20)
        assert isinstance(gateway_for("im", self.settings(), rate_limits=limits), SimulatedGateway)

    def test_simulated_draws_with_the_seed(self):
        gateway = gateway_for("sms", self.settings(), seed=3, outcomes={"sms": (1.0, 1.0)})
        [receipt] = gateway.send_batch(messages(1))
        assert (receipt.delivered, receipt.responded) == (True, True)
        assert gateway.sent == [], "the factory's simulated gateways do not record keys"

    def test_webhook_urls_must_be_a_mapping(self):
        with pytest.raises(TypeError, match="expected a mapping"):
            gateway_for("sms", self.settings(), object())

    @pytest.mark.parametrize("channel", ["branch", "partner", "fax"])
    def test_channel_without_gateway(self, channel):
        with pytest.raises(ValueError, match="sends nothing"):
            gateway_for(channel, self.settings())
