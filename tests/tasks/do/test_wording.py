"""Wording: templates render per channel and variant, and every message passes the
compliance checks of templates/compliance.yaml before a batch goes."""

from __future__ import annotations

import itertools
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pdca.errors import UserError
from pdca.settings import PROJECT_ROOT
from tasks.common.campaigns import CampaignSpec, load_spec
from tasks.do import templates, wording
from tasks.do.wording import (
    ComplianceError,
    ComplianceRules,
    Message,
    Violation,
    check,
    find_rates,
    load_rules,
    message_context,
    preflight,
    render,
    text_of_html,
)

EXAMPLE = PROJECT_ROOT / "examples" / "sme-spring-2026.yaml"
SHIPPED_CHANNELS = ["phone", "sms", "im", "app_push", "email"]
VARIANTS = ["A", "B"]
CAP = 24.0

GOOD_TAIL = "Borrow rationally; repay on time. Reply TD to unsubscribe."
"""What a purpose-written bad template adds so that only the rule under test fails."""


@pytest.fixture(scope="module")
def rules() -> ComplianceRules:
    return load_rules()


@pytest.fixture(scope="module")
def spec() -> CampaignSpec:
    return load_spec(EXAMPLE)


def context(**changes: Any) -> dict[str, Any]:
    """A message context as preflight builds it, with fields changed."""
    values = {
        "campaign_name": "SME revolving loan, spring push",
        "product": "sme-revolving",
        "apr": 14.5,
        "max_amount": 500000,
        "variant": "A",
        "segment": "retail",
        "opt_out": "Reply TD to unsubscribe.",
    }
    return values | changes


@pytest.fixture(autouse=True)
def templates_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's templates folder that the test may add templates to
    (templates are read from that folder only)."""
    folder = tmp_path / "templates"
    shutil.copytree(templates.TEMPLATES_DIR, folder)
    monkeypatch.setattr(templates, "TEMPLATES_DIR", folder)
    return folder


def write_template(tmp_path: Path, text: str, name: str = "bad.j2") -> str:
    """A template file in the test's templates folder; render takes its absolute path."""
    path = tmp_path / "templates" / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def render_text(tmp_path: Path, text: str, channel: str = "sms", name: str = "bad.j2") -> Message:
    return render(channel, "A", context(), write_template(tmp_path, text, name))


def violations_of(
    tmp_path: Path, text: str, rules: ComplianceRules, channel: str = "sms", cap: float = CAP
) -> list[Violation]:
    return check(render_text(tmp_path, text, channel), cap, rules)


def assert_passes(violations: list[Violation]) -> None:
    assert violations == [], "expected no violations, got:\n" + "\n".join(map(str, violations))


def assert_one(violations: list[Violation], rule: str, offending: str) -> Violation:
    """Exactly one violation, of `rule`, whose offending text contains `offending`."""
    listed = "\n".join(map(str, violations)) or "(none)"
    assert [v.rule for v in violations] == [rule], f"expected only {rule}, got:\n{listed}"
    (violation,) = violations
    assert offending.casefold() in violation.offending_text.casefold(), (
        f"expected {offending!r} in the offending text, got {violation.offending_text!r}"
    )
    return violation


# --- the shipped templates --------------------------------------------------------------


class TestShippedTemplates:
    @pytest.mark.parametrize("variant", VARIANTS)
    @pytest.mark.parametrize("channel", SHIPPED_CHANNELS)
    def test_renders_and_passes_with_the_example_spec(
        self, spec: CampaignSpec, rules: ComplianceRules, channel: str, variant: str
    ):
        message = render(
            channel,
            variant,
            message_context(spec, channel, variant, "retail"),
            spec.templates.get(channel),
        )
        assert message.channel == channel and message.variant == variant
        assert "24% APR (annual)" in message.body
        assert_passes(check(message, spec.risk.apr_cap, rules))

    @pytest.mark.parametrize("channel", SHIPPED_CHANNELS)
    def test_variants_word_differently(self, channel: str):
        a, b = (render(channel, variant, context(variant=variant)) for variant in VARIANTS)
        assert a.body != b.body

    @pytest.mark.parametrize("channel", SHIPPED_CHANNELS)
    def test_offer_rate_and_amount_are_quoted(self, rules: ComplianceRules, channel: str):
        message = render(channel, "A", context(apr=14.5, max_amount=500000))
        assert "14.5% APR (annual)" in message.body
        assert "500,000" in message.body
        assert_passes(check(message, CAP, rules))

    @pytest.mark.parametrize("channel", SHIPPED_CHANNELS)
    def test_without_max_amount(self, rules: ComplianceRules, channel: str):
        message = render(channel, "B", context(max_amount=None))
        assert "None" not in message.body
        assert_passes(check(message, CAP, rules))

    def test_preflight_passes_for_the_example(self, spec: CampaignSpec):
        messages = preflight(spec, SHIPPED_CHANNELS, VARIANTS, ["retail", "manufacturing"])
        assert len(messages) == len(SHIPPED_CHANNELS) * 2 * 2

    def test_email_has_a_subject_and_html(self):
        message = render("email", "B", context())
        assert message.subject and "\n" not in message.subject
        assert message.html is not None and message.html.lstrip().startswith("<!DOCTYPE html>")
        assert "<" not in message.body, "the body is the text/plain alternative"

    @pytest.mark.parametrize("channel", ["phone", "sms", "im", "app_push"])
    def test_text_channels_have_no_html(self, channel: str):
        message = render(channel, "A", context())
        assert message.html is None
        assert message.subject is None


# --- rendering --------------------------------------------------------------------------


class TestRender:
    @pytest.mark.parametrize(
        ("channel", "template"),
        [
            ("sms", "templates/sms.j2"),
            ("email", "templates/email.html.j2"),
            ("phone", "templates/phone.j2"),
        ],
    )
    def test_default_template_per_channel(self, channel: str, template: str):
        assert render(channel, "A", context()).template == template

    def test_spec_template_overrides_the_default(self, tmp_path: Path):
        path = write_template(tmp_path, "Custom {{ variant }}")
        message = render("sms", "B", context(), path)
        assert message.template == path
        assert message.body == "Custom B"

    def test_absolute_template_can_import_the_shared_disclosures(self, tmp_path: Path):
        text = (
            '{% from "templates/_disclosures.j2" import annual_rate %}Rate {{ annual_rate(apr) }}'
        )
        assert render_text(tmp_path, text).body == "Rate 14.5% APR (annual)"

    @pytest.mark.parametrize(
        ("apr", "shown"), [(14.5, "14.5%"), (24.0, "24%"), (10, "10%"), (9.99, "9.99%")]
    )
    def test_percent_filter_shows_the_rate_exactly(self, tmp_path: Path, apr: float, shown: str):
        path = write_template(tmp_path, "{{ apr | percent }}")
        assert render("sms", "A", context(apr=apr), path).body == shown

    def test_undefined_variable_is_an_error_naming_template_and_variable(self, tmp_path: Path):
        path = write_template(tmp_path, "Hello {{ customer_name }}")
        with pytest.raises(UserError, match=r"bad\.j2: 'customer_name' is undefined"):
            render("sms", "A", context(), path)

    def test_missing_template(self, tmp_path: Path):
        with pytest.raises(UserError, match="no such template"):
            render("sms", "A", context(), str(tmp_path / "templates" / "nope.j2"))

    def test_channel_without_a_template(self):
        with pytest.raises(UserError, match=r"templates/branch\.j2: no such template"):
            render("branch", "A", context())

    def test_syntax_error_names_the_line(self, tmp_path: Path):
        path = write_template(tmp_path, "line one\n{% if variant %}never closed")
        with pytest.raises(UserError, match=r"bad\.j2, line 2"):
            render("sms", "A", context(), path)

    @pytest.mark.parametrize("key", ["phone", "email", "customer_id"])
    def test_customer_data_is_refused(self, key: str):
        with pytest.raises(ValueError, match=key):
            render("sms", "A", context(**{key: "x"}))

    def test_email_needs_a_subject(self, tmp_path: Path):
        path = write_template(tmp_path, "<p>no subject</p>", "mail.html.j2")
        with pytest.raises(UserError, match="needs a subject"):
            render("email", "A", context(), path)


class TestTemplatesOnlyFromTheFolder:
    RULE = "a template must be a file inside the project's templates folder"

    @pytest.mark.parametrize(
        "name", ["/etc/passwd", "../x.j2", "templates/../pdca/settings.py", "sms.j2", "templates"]
    )
    def test_a_path_outside_the_folder_is_refused_quoting_the_rule(self, name: str):
        with pytest.raises(UserError) as caught:
            render("sms", "A", context(), name)
        message = str(caught.value)
        assert message.startswith(f"{name}: template refused: {self.RULE}")
        assert "root:" not in message and "\n" not in message, "the rule, never the file"

    def test_a_link_out_of_the_folder_is_refused(self, templates_folder: Path, tmp_path: Path):
        secret = tmp_path / "secret.txt"
        secret.write_text("the secret", encoding="utf-8")
        (templates_folder / "link.j2").symlink_to(secret)
        with pytest.raises(UserError, match="template refused") as caught:
            render("sms", "A", context(), "templates/link.j2")
        assert "the secret" not in str(caught.value)

    def test_an_include_out_of_the_folder_is_not_found(self, tmp_path: Path):
        path = write_template(tmp_path, '{% include "/etc/passwd" %}{% include "../x" %}')
        with pytest.raises(UserError, match="no such template to include") as caught:
            render("sms", "A", context(), path)
        assert "root:" not in str(caught.value) and self.RULE in str(caught.value)

    def test_a_spec_path_in_the_folder_renders(self, tmp_path: Path):
        write_template(tmp_path, "Custom {{ variant }}", "custom.j2")
        assert render("sms", "B", context(), "templates/custom.j2").body == "Custom B"

    @pytest.mark.parametrize(
        "reach",
        [
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
            "{{ self._TemplateReference__context }}",
            "{{ (apr | string).__class__ }}",
        ],
    )
    def test_a_template_reaching_into_python_is_refused_by_the_sandbox(
        self, tmp_path: Path, reach: str
    ):
        path = write_template(tmp_path, f"Rate {{{{ apr }}}}. {reach}")
        with pytest.raises(UserError) as caught:
            render("sms", "A", context(), path)
        assert str(caught.value).startswith(f"{path}: refused by the template sandbox: ")
        assert str(caught.value).endswith("is unsafe.")


class TestHtmlEscaping:
    NAME = "<script>alert(1)</script> & Sons"

    def test_campaign_name_is_escaped_in_the_email(self, rules: ComplianceRules):
        message = render("email", "A", context(campaign_name=self.NAME))
        assert message.html is not None
        assert "<script>" not in message.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons" in message.html
        assert self.NAME in message.body, "the text alternative shows the name as written"
        assert_passes(check(message, CAP, rules))

    def test_subject_is_plain_text(self):
        message = render("email", "A", context(campaign_name=self.NAME))
        assert message.subject is not None
        assert message.subject.startswith(self.NAME)

    def test_text_templates_are_not_escaped(self):
        message = render("sms", "A", context(campaign_name="Li & Sons"))
        assert "[Li & Sons]" in message.body


class TestTextOfHtml:
    @pytest.mark.parametrize(
        ("markup", "text"),
        [
            ("<p>a &amp; b</p>", "a & b"),
            ("<p>5 &lt; 6</p><p>next</p>", "5 < 6\nnext"),
            ("<head><title>t</title><style>p {}</style></head><body><p>x</p></body>", "x"),
            ("<table><tr><th>Rate</th><td>14.5%</td></tr></table>", "Rate 14.5%"),
            ("<p>one\n   two</p><script>var a = 1;</script>", "one two"),
            ("<p>Borrow <b>rationally</b>;<br>repay</p>", "Borrow rationally;\nrepay"),
        ],
    )
    def test_visible_text(self, markup: str, text: str):
        assert text_of_html(markup) == text


# --- the rules --------------------------------------------------------------------------


class TestRateDisclosure:
    def test_success(self, tmp_path: Path, rules: ComplianceRules):
        assert_passes(violations_of(tmp_path, f"Credit at 14.5% APR (annual). {GOOD_TAIL}", rules))

    def test_missing_apr(self, tmp_path: Path, rules: ComplianceRules):
        violation = assert_one(
            violations_of(tmp_path, f"Credit for your business. {GOOD_TAIL}", rules),
            "rate-disclosure",
            "(no rate shown)",
        )
        assert "14.5% APR (annual)" in violation.detail, "the error says what is expected"

    @pytest.mark.parametrize(
        ("text", "offending"),
        [
            ("Credit at 14.5% APR.", "14.5% APR"),
            ("Credit at an interest rate of 14.5%.", "14.5%"),
            ("Credit at 14.5% APR (yearly).", "14.5% APR"),
        ],
    )
    def test_apr_without_annual(
        self, tmp_path: Path, rules: ComplianceRules, text: str, offending: str
    ):
        assert_one(
            violations_of(tmp_path, f"{text} {GOOD_TAIL}", rules), "rate-disclosure", offending
        )


class TestRiskWarning:
    @pytest.mark.parametrize(
        "warning",
        [
            "Borrow rationally; repay on time.",
            "Borrow rationally, within your means, and repay on time.",
            "BORROW RATIONALLY;\n   repay on time.",
        ],
    )
    def test_success(self, tmp_path: Path, rules: ComplianceRules, warning: str):
        text = f"Credit at 14.5% APR (annual). {warning} Reply TD."
        assert_passes(violations_of(tmp_path, text, rules))

    @pytest.mark.parametrize(
        "text",
        [
            "Credit at 14.5% APR (annual). Reply TD.",
            "Credit at 14.5% APR (annual). Borrow wisely. Reply TD.",
            "Credit at 14.5% APR (annual). Borrow rationally. Reply TD.",
        ],
    )
    def test_missing_warning(self, tmp_path: Path, rules: ComplianceRules, text: str):
        assert_one(violations_of(tmp_path, text, rules), "risk-warning", "no risk warning")


class TestForbiddenPromises:
    BASE = "Credit at 14.5% APR (annual)."

    @pytest.mark.parametrize(
        ("promise", "rule", "offending"),
        [
            ("Guaranteed approval!", "forbidden/guaranteed-approval", "Guaranteed approval"),
            ("Approval guaranteed.", "forbidden/guaranteed-approval", "Approval guaranteed"),
            ("100% approval for SMEs.", "forbidden/guaranteed-approval", "100% approval"),
            ("No credit check.", "forbidden/no-credit-check", "No credit check"),
            ("No risk, all reward.", "forbidden/no-risk", "No risk"),
            ("A risk-free way to grow.", "forbidden/no-risk", "risk-free"),
            ("Enjoy zero interest!", "forbidden/zero-interest", "zero interest"),
            ("Interest-free credit.", "forbidden/zero-interest", "Interest-free"),
            ("Pay 0% interest.", "forbidden/zero-interest", "0% interest"),
            ("Only 0.05% per day.", "forbidden/non-annual-rate", "0.05% per day"),
            ("A low monthly rate.", "forbidden/non-annual-rate", "monthly rate"),
        ],
    )
    def test_failure(
        self, tmp_path: Path, rules: ComplianceRules, promise: str, rule: str, offending: str
    ):
        text = f"{self.BASE} {promise} {GOOD_TAIL}"
        assert_one(violations_of(tmp_path, text, rules), rule, offending)

    @pytest.mark.parametrize(
        "promise",
        [
            "Zero interest for the first 30 days, then the annual rate above.",
            "For the first 30 days, zero interest.",
            "0% interest during the first 2 months!",
            "Zero\ninterest for the first\n30 days.",
        ],
    )
    def test_zero_interest_with_its_conditions(
        self, tmp_path: Path, rules: ComplianceRules, promise: str
    ):
        assert_passes(violations_of(tmp_path, f"{self.BASE} {promise} {GOOD_TAIL}", rules))

    def test_conditions_in_another_sentence_do_not_count(
        self, tmp_path: Path, rules: ComplianceRules
    ):
        text = f"{self.BASE} Zero interest! Offer valid for the first 30 days. {GOOD_TAIL}"
        assert_one(violations_of(tmp_path, text, rules), "forbidden/zero-interest", "Zero interest")

    @pytest.mark.parametrize(
        "harmless",
        [
            "Approval depends on the credit review.",
            "Pay interest only on what you use.",
            "Know the risks before you borrow.",
        ],
    )
    def test_harmless_wording(self, tmp_path: Path, rules: ComplianceRules, harmless: str):
        assert_passes(violations_of(tmp_path, f"{self.BASE} {harmless} {GOOD_TAIL}", rules))

    def test_promise_in_the_email_subject(self, tmp_path: Path, rules: ComplianceRules):
        text = (
            "<title>{% block subject %}Guaranteed approval{% endblock %}</title>"
            f"<p>{self.BASE} {GOOD_TAIL}</p>"
        )
        message = render_text(tmp_path, text, channel="email", name="mail.html.j2")
        assert_one(check(message, CAP, rules), "forbidden/guaranteed-approval", "Guaranteed")


class TestAprCap:
    def test_rate_over_the_cap(self, tmp_path: Path, rules: ComplianceRules):
        text = f"Credit at 29.9% APR (annual). {GOOD_TAIL}"
        violation = assert_one(violations_of(tmp_path, text, rules, cap=24), "apr-cap", "29.9%")
        assert "24%" in violation.detail

    def test_rate_at_the_cap(self, tmp_path: Path, rules: ComplianceRules):
        text = f"Credit at 24% APR (annual). {GOOD_TAIL}"
        assert_passes(violations_of(tmp_path, text, rules, cap=24))

    def test_second_rate_over_the_cap(self, tmp_path: Path, rules: ComplianceRules):
        text = f"Rates from 9.9% to 29.9%, 14.5% APR (annual) for most. {GOOD_TAIL}"
        assert_one(violations_of(tmp_path, text, rules, cap=24), "apr-cap", "29.9%")

    def test_rendered_apr_over_the_cap(self, rules: ComplianceRules):
        message = render("sms", "A", context(apr=29.9))
        assert_one(check(message, 24, rules), "apr-cap", "29.9% APR (annual)")

    def test_non_rate_percentage_is_not_capped(self, tmp_path: Path, rules: ComplianceRules):
        text = f"30% down payment, 14.5% APR (annual). Save 50% on fees. {GOOD_TAIL}"
        assert_passes(violations_of(tmp_path, text, rules, cap=24))

    @pytest.mark.parametrize(
        ("text", "rates"),
        [
            ("14.5% APR (annual)", ["14.5"]),
            ("0% down payment, 14.5% APR (annual)", ["14.5"]),
            ("Rates from 9.9% to 29.9% APR", ["9.9", "29.9"]),
            ("Interest rates for SMEs range from 9.9% to 29.9%", ["9.9", "29.9"]),
            ("interest rate: 18%", ["18"]),
            ("18 % p.a. for all", ["18"]),
            ("14.5 percent annual interest", ["14.5"]),
            ("a rate wrapped at 29.9%\nAPR", ["29.9"]),
            ("Save 30% on fees", []),
            ("30% off your first interest payment", []),
            ("90% approval rate", []),
            ("50% of the interest back", []),
            ("Up to 30%. The interest is low", []),
            ("Free for 30% of members; interest applies", []),
            # when in doubt, a rate: its clause talks about rates
            ("Save 30% on fees at a low rate", ["30"]),
        ],
    )
    def test_what_counts_as_a_rate(self, rules: ComplianceRules, text: str, rates: list[str]):
        assert [rate.value for rate in find_rates(text, rules)] == [Decimal(r) for r in rates]


class TestMaxLength:
    def test_sms_over_the_limit(self, tmp_path: Path, rules: ComplianceRules):
        text = f"Credit at 14.5% APR (annual). {'Really. ' * 40}{GOOD_TAIL}"
        violation = assert_one(violations_of(tmp_path, text, rules), "max-length", "Credit at")
        assert "sms allows 300" in violation.detail

    def test_sms_at_the_limit(self, tmp_path: Path, rules: ComplianceRules):
        head = f"Credit at 14.5% APR (annual). {GOOD_TAIL} "
        text = head + "x" * (300 - len(head))
        assert len(render_text(tmp_path, text).body) == 300
        assert_passes(violations_of(tmp_path, text, rules))

    def test_phone_script_has_no_limit(self, tmp_path: Path, rules: ComplianceRules):
        text = f"Credit at 14.5% APR (annual). {'Explain. ' * 100}{GOOD_TAIL}"
        assert_passes(violations_of(tmp_path, text, rules, channel="phone"))


# --- the batch --------------------------------------------------------------------------


class TestPreflight:
    def test_each_combination_renders_once(
        self, spec: CampaignSpec, rules: ComplianceRules, monkeypatch: pytest.MonkeyPatch
    ):
        calls: list[tuple[str, str, str]] = []
        real_render = wording.render

        def counting_render(channel: str, variant: str, context: dict, template_path=None):
            calls.append((channel, variant, context["segment"]))
            return real_render(channel, variant, context, template_path)

        monkeypatch.setattr(wording, "render", counting_render)
        # a batch of 1,000 customers: their (channel, variant, segment) repeat
        customers = list(
            itertools.islice(
                itertools.cycle(
                    itertools.product(["sms", "im", "phone"], ["A", "B"], ["retail", "farm"])
                ),
                1000,
            )
        )
        channels, variants, segments = (list(column) for column in zip(*customers, strict=True))
        messages = preflight(spec, channels, variants, segments, rules)
        assert len(calls) == 3 * 2 * 2
        assert len(set(calls)) == len(calls), "a combination was rendered twice"
        assert set(messages) == set(calls)

    def test_holdout_is_never_rendered(self, spec: CampaignSpec, rules: ComplianceRules):
        messages = preflight(spec, ["sms"], ["A", "holdout", "B"], ["retail"], rules)
        assert set(messages) == {("sms", "A", "retail"), ("sms", "B", "retail")}

    def test_failing_template_blocks_the_batch(
        self, spec: CampaignSpec, rules: ComplianceRules, tmp_path: Path
    ):
        bad = write_template(
            tmp_path,
            "Guaranteed approval at 29.9% APR (annual)! Reply TD.",
            "sms.j2",
        )
        spec = spec.model_copy(update={"templates": {"sms": bad}})
        with pytest.raises(ComplianceError) as caught:
            preflight(spec, ["phone", "sms"], VARIANTS, ["retail", "farm"], rules)
        error = caught.value
        assert isinstance(error, UserError), "the CLI reports it as a user error (exit 2)"
        message = str(error)
        assert "\n" not in message, "one line, per the CLI's style"
        assert f"{bad}: forbidden/guaranteed-approval: Guaranteed approval" in message
        assert f"{bad}: risk-warning: (no risk warning)" in message
        assert f"{bad}: apr-cap: Guaranteed approval at 29.9% APR (annual)" in message
        assert "templates/phone.j2" not in message, "the good template is not blamed"
        # the same violation from A/B × two segments is listed once
        assert len(error.violations) == len(set(error.violations)) == 3

    def test_violation_prints_template_rule_and_text(self):
        violation = Violation("templates/sms.j2", "forbidden/no-risk", "No risk")
        assert str(violation) == "templates/sms.j2: forbidden/no-risk: No risk"
        detailed = Violation("templates/sms.j2", "apr-cap", "29.9% APR", "above the cap")
        assert str(detailed) == "templates/sms.j2: apr-cap: 29.9% APR (above the cap)"


# --- the rules file ---------------------------------------------------------------------


RULES_TEXT = (PROJECT_ROOT / "templates" / "compliance.yaml").read_text(encoding="utf-8")


class TestLoadRules:
    def test_shipped_rules_validate(self, rules: ComplianceRules):
        assert rules.reviewed_by
        assert rules.reviewed_at.year >= 2026
        assert {promise.id for promise in rules.forbidden} >= {
            "guaranteed-approval",
            "no-risk",
            "zero-interest",
        }
        assert rules.max_length["sms"] <= 300

    @pytest.mark.parametrize(
        ("old", "new", "problem"),
        [
            ("reviewed_by: ", "reviewed_byy: ", "reviewed_by: Field required"),
            ("reviewed_at: 20", "reviewed_at: not-a-date-20", "reviewed_at"),
            ("  not_a_rate: '", "  not_a_rat: '", "rates.not_a_rate: Field required"),
            ("  sms: 300", "  fax: 300", "max_length.fax"),
            ("  sms: 300", "  sms: -1", "max_length.sms"),
            ("  example: ", '  example: "14.5% APR"\n  ignored: ', "rate_disclosure.ignored"),
            ("  - id: no-risk", "  - id: guaranteed-approval", "listed more than once"),
            ("  rate_words: '", "  rate_words: '(", "rates.rate_words: not a valid regular"),
            ("  phrases:\n", "  phrases: []\n  unused:\n", "risk_warning"),
        ],
    )
    def test_broken_rules_file(self, tmp_path: Path, old: str, new: str, problem: str):
        assert old in RULES_TEXT, f"test setup: {old!r} is not in the rules file"
        path = tmp_path / "compliance.yaml"
        path.write_text(RULES_TEXT.replace(old, new, 1), encoding="utf-8")
        with pytest.raises(UserError) as caught:
            load_rules(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: invalid compliance rules"), message
        assert problem in message, message

    def test_example_must_match_its_pattern(self, tmp_path: Path):
        path = tmp_path / "compliance.yaml"
        path.write_text(
            RULES_TEXT.replace('example: "14.5% APR (annual)"', 'example: "14.5%"'), "utf-8"
        )
        with pytest.raises(UserError, match="does not match the pattern"):
            load_rules(path)

    def test_key_given_twice(self, tmp_path: Path):
        path = tmp_path / "compliance.yaml"
        path.write_text(RULES_TEXT + "\nforbidden: []\n", encoding="utf-8")
        with pytest.raises(UserError, match=r"line \d+: invalid YAML: key 'forbidden'"):
            load_rules(path)

    @pytest.mark.parametrize(
        ("text", "problem"),
        [("- just\n- a list\n", "expected a mapping"), ("a: [unclosed\n", "invalid YAML")],
    )
    def test_not_a_rules_document(self, tmp_path: Path, text: str, problem: str):
        path = tmp_path / "compliance.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=problem):
            load_rules(path)

    def test_missing_file(self, tmp_path: Path):
        with pytest.raises(UserError, match="no such file"):
            load_rules(tmp_path / "nope.yaml")
