"""The review e-mail: its MIME structure, and sending it to a real SMTP server (aiosmtpd on
loopback: plain, with a login, with STARTTLS), or writing it to the outbox."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from pdca.errors import UserError
from pdca.settings import Settings
from tasks.review.charts import FUNNEL_SIZE, chart, funnel_chart
from tasks.review.mail import (
    SmtpConfig,
    build_message,
    content_ids,
    is_transient,
    send_message,
    write_eml_file,
)
from tests.servers import free_port, smtp_server

RECIPIENTS = ["ops-lead@example.com", "risk-head@example.com"]
PNG = funnel_chart([{"label": "touches", "count": 10, "rate": None}], "Funnel")


def review_message(names: tuple[str, ...] = ("funnel-a", "trend-a")) -> EmailMessage:
    """A message as the flow builds it: the HTML refers to each image by its cid."""
    ids = content_ids(list(names))
    html = "".join(f'<img src="cid:{cid}" alt="{name}">' for name, cid in ids.items())
    return build_message(
        subject="Weekly review 2026-W12: demo",
        sender="pdca@localhost",
        recipients=RECIPIENTS,
        text="Weekly review 2026-W12\nKPIs: 3 on track",
        html=f"<html><body><h1>Weekly review</h1>{html}</body></html>",
        images={cid: chart(name, name, PNG, FUNNEL_SIZE) for name, cid in ids.items()},
    )


def reparsed(message: EmailMessage) -> EmailMessage:
    """The message as a mail client reads it: its bytes parsed again."""
    return email.message_from_bytes(bytes(message), policy=email.policy.default)


class TestBuildMessage:
    def test_alternative_of_text_and_related_html_with_images(self) -> None:
        message = reparsed(review_message())
        assert message.get_content_type() == "multipart/alternative"
        plain, related = message.get_payload()
        assert plain.get_content_type() == "text/plain"
        assert "KPIs: 3 on track" in plain.get_content()
        assert related.get_content_type() == "multipart/related"
        html, *images = related.get_payload()
        assert html.get_content_type() == "text/html"
        assert [part.get_content_type() for part in images] == ["image/png", "image/png"]
        assert all(part.get_content_disposition() == "inline" for part in images)
        assert all(part.get_content() == PNG for part in images)

    def test_a_pdf_makes_it_mixed_with_the_pdf_attached(self) -> None:
        ids = content_ids(["funnel-a"])
        pdf = b"%PDF-1.4\n%fake\n%%EOF\n"
        message = reparsed(
            build_message(
                subject="Weekly review 2026-W12: demo",
                sender="pdca@localhost",
                recipients=RECIPIENTS,
                text="Weekly review 2026-W12",
                html=f'<img src="cid:{ids["funnel-a"]}">',
                images={cid: chart(name, name, PNG, FUNNEL_SIZE) for name, cid in ids.items()},
                pdf=("weekly-review-2026-W12.pdf", pdf),
            )
        )
        assert message.get_content_type() == "multipart/mixed"
        alternative, attachment = message.get_payload()
        assert alternative.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in alternative.get_payload()] == [
            "text/plain",
            "multipart/related",
        ]
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_content_disposition() == "attachment"
        assert attachment.get_filename() == "weekly-review-2026-W12.pdf"
        assert attachment.get_content() == pdf

    def test_every_cid_in_the_html_is_an_inline_part(self) -> None:
        message = reparsed(review_message())
        html, *images = message.get_payload()[1].get_payload()
        referenced = set(re.findall(r'src="cid:([^"]+)"', html.get_content()))
        attached = {part["Content-ID"].strip().strip("<>") for part in images}
        assert referenced == attached and len(attached) == 2
        assert {part.get_filename() for part in images} == {"funnel-a.png", "trend-a.png"}

    def test_headers(self) -> None:
        message = reparsed(review_message())
        assert message["Subject"] == "Weekly review 2026-W12: demo"
        assert [a.addr_spec for a in message["To"].addresses] == RECIPIENTS
        assert message["From"] == "pdca@localhost"
        assert message["Message-ID"] and message["Date"]

    def test_content_ids_are_unique_and_fresh(self) -> None:
        first, second = content_ids(["funnel-a", "trend-a"]), content_ids(["funnel-a"])
        assert len(set(first.values())) == 2
        assert first["funnel-a"] != second["funnel-a"]
        assert all(re.fullmatch(r"[a-z0-9.-]+@pdca\.local", cid) for cid in first.values())

    def test_no_images(self) -> None:
        message = reparsed(review_message(names=()))
        assert [part.get_content_type() for part in message.get_payload()] == [
            "text/plain",
            "text/html",
        ]


class TestSendMessage:
    def test_plain_smtp(self) -> None:
        with smtp_server() as server:
            delivery = send_message(
                review_message(), RECIPIENTS, SmtpConfig(server.host, server.port)
            )
        assert len(server.messages) == 1
        received = server.messages[0]
        assert received.rcpt_tos == RECIPIENTS
        assert received.login is None
        assert received.message["Subject"] == "Weekly review 2026-W12: demo"
        assert delivery.transport == "smtp" and delivery.refused == {}
        assert delivery.server == f"{server.host}:{server.port}"

    def test_logs_in(self) -> None:
        with smtp_server(credentials=("mailer", "pw")) as server:
            config = SmtpConfig(
                server.host, server.port, user="mailer", password="pw", allow_plain_auth=True
            )
            send_message(review_message(), RECIPIENTS, config)
        assert server.logins == [("mailer", "pw")]
        assert server.messages[0].login == "mailer"

    def test_a_password_over_a_plain_connection_is_refused(self) -> None:
        with smtp_server(credentials=("mailer", "hunter2")) as server:
            config = SmtpConfig(server.host, server.port, user="mailer", password="hunter2")
            with pytest.raises(UserError) as raised:
                send_message(review_message(), RECIPIENTS, config)
        message = str(raised.value)
        assert message == (
            f"SMTP server {server.host}:{server.port}: refusing to send the password over a "
            "plain connection: set PDCA_SMTP_STARTTLS=true (or PDCA_SMTP_ALLOW_PLAIN_AUTH=true "
            "to allow it)"
        )
        assert "hunter2" not in message
        assert server.logins == [] and server.messages == []
        assert not is_transient(raised.value), "a setting to fix, not a fault that passes"

    def test_plain_auth_when_the_settings_allow_it(self) -> None:
        allowed = Settings(smtp_host="127.0.0.1", smtp_user="mailer", smtp_allow_plain_auth=True)
        assert SmtpConfig.from_settings(allowed).allow_plain_auth
        assert not SmtpConfig.from_settings(Settings(smtp_host="127.0.0.1")).allow_plain_auth

    def test_starttls_then_login(self) -> None:
        with smtp_server(credentials=("mailer", "pw"), tls=True) as server:
            config = SmtpConfig(server.host, server.port, "mailer", "pw", starttls=True)
            send_message(review_message(), RECIPIENTS, config, ssl_context=server.client_context)
        assert server.messages[0].login == "mailer"

    def test_an_untrusted_certificate_is_refused_and_not_retried(self) -> None:
        with smtp_server(tls=True) as server:
            config = SmtpConfig(server.host, server.port, starttls=True)
            with pytest.raises(ssl.SSLCertVerificationError) as raised:
                send_message(review_message(), RECIPIENTS, config)
        assert not server.messages
        assert not is_transient(raised.value)

    def test_wrong_password_is_permanent(self) -> None:
        with smtp_server(credentials=("mailer", "pw")) as server:
            config = SmtpConfig(
                server.host, server.port, user="mailer", password="wrong", allow_plain_auth=True
            )
            with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
                send_message(review_message(), RECIPIENTS, config)
        assert not is_transient(raised.value)
        assert "wrong" not in str(raised.value)

    def test_one_refused_recipient_is_reported_not_raised(self) -> None:
        with smtp_server(refuse=["risk-head@example.com"]) as server:
            delivery = send_message(
                review_message(), RECIPIENTS, SmtpConfig(server.host, server.port)
            )
        assert server.messages[0].rcpt_tos == ["ops-lead@example.com"]
        assert list(delivery.refused) == ["risk-head@example.com"]
        assert delivery.refused["risk-head@example.com"].startswith("550")

    @pytest.mark.parametrize(("code", "transient"), [("451 4.3.0", True), ("550 5.1.1", False)])
    def test_all_refused_is_transient_only_for_4xx(self, code: str, transient: bool) -> None:
        with smtp_server(refuse=RECIPIENTS, refuse_code=code) as server:
            config = SmtpConfig(server.host, server.port)
            with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
                send_message(review_message(), RECIPIENTS, config)
        assert is_transient(raised.value) is transient

    def test_nobody_listening_is_transient(self) -> None:
        config = SmtpConfig("127.0.0.1", free_port(), timeout=2)
        with pytest.raises(OSError) as raised:
            send_message(review_message(), RECIPIENTS, config)
        assert is_transient(raised.value)


class TestIsTransient:
    @pytest.mark.parametrize(
        ("error", "transient"),
        [
            (smtplib.SMTPServerDisconnected("gone"), True),
            (smtplib.SMTPResponseException(421, b"busy"), True),
            (smtplib.SMTPResponseException(554, b"no"), False),
            (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
            (smtplib.SMTPDataError(452, b"insufficient storage"), True),
            (ConnectionResetError(), True),
            (TimeoutError(), True),
            (socket.gaierror(-2, "Name or service not known"), True),
            (ValueError("a bug"), False),
        ],
    )
    def test_classification(self, error: BaseException, transient: bool) -> None:
        assert is_transient(error) is transient


class TestOutbox:
    def test_eml_parses_back_whole(self, tmp_path: Path) -> None:
        message = review_message()
        delivery = write_eml_file(message, tmp_path / "outbox", "weekly-review-2026-W12")
        assert delivery.transport == "outbox"
        assert delivery.path.parent == (tmp_path / "outbox").resolve()
        assert re.fullmatch(r"weekly-review-2026-W12-\d{8}T\d{12}Z\.eml", delivery.path.name)
        again = email.message_from_bytes(delivery.path.read_bytes(), policy=email.policy.default)
        assert again["Subject"] == message["Subject"]
        assert delivery.recipients == RECIPIENTS
        assert b"\r\n" in delivery.path.read_bytes(), "an .eml file has CRLF line ends"
        images = again.get_payload()[1].get_payload()[1:]
        assert [part.get_content() for part in images] == [PNG, PNG]

    def test_two_sends_two_files(self, tmp_path: Path) -> None:
        first = write_eml_file(review_message(), tmp_path, "weekly-review-2026-W12")
        second = write_eml_file(review_message(), tmp_path, "weekly-review-2026-W12")
        assert first.path != second.path and len(list(tmp_path.glob("*.eml"))) == 2


class TestSmtpConfig:
    def test_no_host_means_the_outbox(self) -> None:
        assert SmtpConfig.from_settings(Settings(smtp_host=None)) is None

    def test_from_settings_and_the_password_stays_out_of_repr(self) -> None:
        settings = Settings(
            smtp_host="mail.example.com",
            smtp_port=587,
            smtp_user="mailer",
            smtp_password=SecretStr("hunter2"),
            smtp_starttls=True,
        )
        config = SmtpConfig.from_settings(settings)
        assert config == SmtpConfig("mail.example.com", 587, "mailer", "hunter2", True)
        assert "hunter2" not in repr(config)

    def test_audit_detail_has_no_password(self) -> None:
        with smtp_server(credentials=("mailer", "hunter2")) as server:
            config = SmtpConfig(
                server.host, server.port, "mailer", "hunter2", allow_plain_auth=True
            )
            delivery = send_message(review_message(), RECIPIENTS, config)
        assert "hunter2" not in str(delivery.audit_detail())
        assert delivery.audit_detail()["recipients"] == RECIPIENTS
