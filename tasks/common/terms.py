"""The words for values the code names: metrics, statuses, action types, decisions.

A report shows `disbursements`, `off_track` or `reallocate_budget` where the data holds
them. In English they are shown as they are (the contract's names, which the JSON, the
CLI and the docs use: English output is unchanged); in another locale they are
translated by the catalog like any fixed text, so a Chinese reader sees 放款笔数, 偏离目标,
调整预算分配. A value with no entry here (a channel, a segment, a variant) is data, shown
as it is.
"""

from __future__ import annotations

from tasks.common.i18n import N_, SOURCE_LOCALE, translations

TERMS = frozenset(
    {
        # metrics (the contract's names)
        N_("touches"),
        N_("delivered"),
        N_("responded"),
        N_("applications"),
        N_("approved"),
        N_("decided"),
        N_("disbursements"),
        N_("disbursed_amount"),
        N_("cost"),
        N_("reach_rate"),
        N_("response_rate"),
        N_("application_rate"),
        N_("approval_rate"),
        N_("disbursement_rate"),
        N_("cac"),
        N_("roi"),
        N_("net_interest"),
        N_("expected_loss"),
        N_("overdue_rate_30"),
        N_("complaint_rate"),
        N_("complaints"),
        N_("new_customers"),
        N_("loan_balance"),
        N_("npl_rate"),
        N_("ltv"),
        N_("ltv_cac"),
        N_("nps"),
        N_("churn_rate"),
        # KPI statuses
        N_("on_track"),
        N_("at_risk"),
        N_("off_track"),
        N_("no_target"),
        N_("no_data"),
        N_("no check"),
        # action types and statuses
        N_("hold"),
        N_("retire_channel"),
        N_("reallocate_budget"),
        N_("tighten_admission"),
        N_("shift_window"),
        N_("promote_variant"),
        N_("revise_targeting"),
        N_("pause"),
        N_("resume"),
        N_("proposed"),
        N_("rejected"),
        N_("applied"),
        N_("expired"),
        # experiment decisions
        N_("treatment_wins"),
        N_("control_wins"),
        N_("no_difference"),
        N_("insufficient_sample"),
        N_("srm_invalid"),
        # funnel stages and where a bottleneck's reference came from
        N_("delivery"),
        N_("response"),
        N_("application"),
        N_("approval"),
        N_("disbursement"),
        N_("target"),
        N_("baseline"),
        N_("none"),
        # scope keys
        N_("campaign"),
        N_("channel"),
        N_("segment"),
        N_("variant"),
        N_("holdout"),
    }
)
"""Every value the reports translate (`term`)."""

STAGE_DIAGNOSES = {
    "delivery": N_(
        "Few touches reach the customer: look at the contact data (stale or wrong numbers "
        "and addresses, opt-outs) or at the channel itself (provider failures, filtering), "
        "not at the message."
    ),
    "response": N_(
        "Messages arrive but few customers respond: the message, the offer or the timing "
        "(send window) is not landing, so test copy, offer and window."
    ),
    "application": N_(
        "Customers receive the message but few apply: the message, the offer or its timing "
        "fails to convert, so test copy, offer and send window before widening the audience."
    ),
    "approval": N_(
        "Many applications but a low approval rate point at targeting (who is contacted: "
        "score floor, segments, industries), not at the message: the campaign persuades "
        "people who do not qualify."
    ),
    "disbursement": N_(
        "Approved applicants do not take the loan: look at the offer terms (amount, rate, "
        "tenor) or at fulfilment (signing, documents, time to disburse)."
    ),
}
"""The check stage's diagnosis of each bottleneck stage (`tasks.check.findings.DIAGNOSES`,
which writes them into the stored result in English), for the reports to translate."""


def term(value: object, locale: str) -> str:
    """`value` in the reader's words: a known term translated, anything else as it is."""
    text = "" if value is None else str(value)
    if locale == SOURCE_LOCALE or text not in TERMS:
        return text
    return translations(locale).gettext(text)


def scope_words(scope: str, locale: str) -> str:
    """A scope label (`campaign`, `channel=sms, segment=young`) with its keys translated:
    `活动整体`, `渠道=sms, 客群=young`; in English unchanged."""
    if locale == SOURCE_LOCALE:
        return scope
    parts = []
    for part in scope.split(", "):
        key, sep, value = part.partition("=")
        parts.append(f"{term(key, locale)}{sep}{value}" if sep else term(part, locale))
    return ", ".join(parts)


def diagnosis_words(stage: str | None, text: str | None, locale: str) -> str:
    """The bottleneck's diagnosis in the reader's words: the check stage's sentence for the
    stage translated when it is the known one, else the stored text as it is."""
    known = STAGE_DIAGNOSES.get(stage or "")
    if locale == SOURCE_LOCALE or known is None or " ".join((text or "").split()) != known:
        return text or ""
    return translations(locale).gettext(known)
