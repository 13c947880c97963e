"""Act: turn the period's findings into approved adjustments, a new SOP version and a report.

Reads like the stage: take the period's check result (checking first if there is none);
propose adjustments from it by the rules of `tasks.act.proposals` (only `hold` when its data
are untrusted); store them; ask a manager to decide each one — in the Prefect UI, where
the run pauses with a form per proposal (approve or reject, optionally edit the amount,
with a comment and the reviewer's name) — or approve them all for scripted runs; write
every decision to the audit log; let each approved action make a new SOP version; write
the adjustment report. Approved actions steer the next `pdca plan` (budget) and
`pdca dispatch` (admission, windows, variants, targeting) through `tasks.common.rules`.
A channel or segment past a hard guardrail is paused at once, without approval, and its
resume proposed (`tasks.act.guardrails`): that one is a manager's, never auto-approved.
What people see (the form's text, the report, the run's artifacts) is built in
`tasks.act.artifacts`; the design of the rules is in docs/act.md.

Nobody to ask: with no Prefect server (the embedded API belongs to this process alone)
proposals stay `proposed`, as they do when the approval times out.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.settings import get_current_settings
from prefect.states import Running
from prefect.utilities.urls import url_for
from pydantic import Field, create_model
from sqlalchemy import Connection, select

from flows.check import check_flow
from pdca.db import make_engine
from pdca.models import CheckResult as CheckRow
from pdca.settings import get_settings
from tasks.act.actions import decide, read_action, save_proposals, stored_actions
from tasks.act.artifacts import adjustment_report_html, proposal_markdown, publish_act
from tasks.act.guardrails import MANAGER_ONLY, Guarded, guard
from tasks.act.proposals import Thresholds, gather_context, propose
from tasks.act.sop import SopRecord, sop_path, sop_versions, update_sop, write_sop_files
from tasks.act.types import APPROVED, PROPOSED, ActResult, Proposal, StoredAction
from tasks.check.check import earlier_checks
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tasks.common.reports import record_report, write_report
from tasks.common.rules import approved_actions, changes_rules
from tasks.common.scopes import format_scope
from tasks.ops.events import emit_awaiting_approval, emit_guardrail_pauses

AUTO_APPROVER = "auto-approve"
"""Who `--auto-approve` decisions are recorded as (with the OS user in the comment)."""


class ProposalDecision(RunInput):
    """A manager's decision on one proposal: the form the Prefect UI shows while paused."""

    decision: Literal["approve", "reject"]
    reviewer: str = Field(min_length=1, description="Your name: recorded in the audit log.")
    comment: str = Field(default="", description="Why: recorded with the decision.")


def decision_form(action: StoredAction) -> type[ProposalDecision]:
    """The form for `action`, its description the proposal itself. A reallocation's form
    also takes an edited amount, bounded by the budget it comes from, so that the UI and
    the API refuse an impossible amount before the run resumes (not after, failing it)."""
    form: type[ProposalDecision] = ProposalDecision
    budget = float(action.params.get("from_budget") or 0.0)
    if action.type == "reallocate_budget" and budget > 0:
        form = create_model(
            "ReallocationDecision",
            __base__=ProposalDecision,
            amount=(
                float | None,
                Field(
                    default=None,
                    gt=0,
                    le=budget,
                    description="The amount to move instead of the proposed one "
                    f"(at most the {action.params.get('from_channel')} budget, {budget:,.2f}).",
                ),
            ),
        )
    return form.with_initial_data(description=proposal_markdown(action))


@task(cache_policy=NO_CACHE)
def read_check_result(conn: Connection, campaign_id: str, period: Period) -> CheckResult | None:
    """The stored check result of the (campaign, period), None when it was never checked."""
    stored = conn.execute(
        select(CheckRow.result).where(
            CheckRow.campaign_id == campaign_id, CheckRow.period == period.name
        )
    ).scalar_one_or_none()
    return None if stored is None else CheckResult.from_json(stored)


@task(cache_policy=NO_CACHE)
def propose_adjustments(
    conn: Connection, spec: CampaignSpec, period: Period, check: CheckResult
) -> list[Proposal]:
    """Every adjustment the check supports, by the rules and thresholds in settings."""
    settings = get_settings()
    context = gather_context(conn, spec, period, attribution_days=settings.attribution_window_days)
    history = [CheckResult.from_json(item) for item in earlier_checks(conn, spec.id, period.name)]
    return propose(check, history, context, Thresholds.from_settings(settings))


@task(cache_policy=NO_CACHE)
def apply_guardrails(
    conn: Connection, spec: CampaignSpec, period: Period, check: CheckResult
) -> Guarded:
    """Pause, at once and committed, each scope past a hard limit; the resumes to propose.
    Each pause is raised as an event for ops."""
    guarded = guard(conn, spec, period, check)
    conn.commit()
    if guarded.applied:
        get_run_logger().warning(
            "guardrail: paused %s",
            ", ".join(format_scope(action.scope) for action in guarded.applied),
        )
        emit_guardrail_pauses(spec.id, period.name, [a.to_json() for a in guarded.applied])
    return guarded


@task(cache_policy=NO_CACHE)
def store_proposals(
    conn: Connection, campaign_id: str, period: Period, proposals: list[Proposal]
) -> list[StoredAction]:
    """Replace the period's undecided proposals; decided ones keep their decision."""
    actions = save_proposals(conn, campaign_id, period, proposals)
    conn.commit()
    return actions


@task(cache_policy=NO_CACHE)
def record_decision(
    conn: Connection, action_id: int, answer: ProposalDecision | dict[str, Any]
) -> StoredAction:
    """One decision, with its audit entry, committed at once (a later pause may time out)."""
    given = answer if isinstance(answer, dict) else answer.model_dump()
    decided = decide(
        conn,
        action_id,
        given["decision"],
        decided_by=given["reviewer"],
        comment=given.get("comment") or "",
        amount=given.get("amount"),
    )
    conn.commit()
    return decided


@task(cache_policy=NO_CACHE)
def update_sop_versions(
    conn: Connection, spec: CampaignSpec, approved_now: list[StoredAction]
) -> list[SopRecord]:
    """A new SOP version per action approved (or a pause applied) in this run (version 1
    first, if none yet)."""
    created = update_sop(
        conn,
        spec,
        approved_actions(conn, spec.id),
        approved_now,
        today=date.today(),
        default_locale=get_settings().locale,
    )
    conn.commit()
    write_sop_files(get_settings().output_dir, sop_versions(conn, spec.id))
    return created


@task(cache_policy=NO_CACHE)
def write_adjustment_report(
    conn: Connection,
    spec: CampaignSpec,
    period: Period,
    check: CheckResult,
    actions: list[StoredAction],
    new_versions: list[SopRecord],
) -> str:
    """The period's adjustment report (HTML from `reports/`), recorded in `reports`."""
    versions = sop_versions(conn, spec.id)
    html = adjustment_report_html(
        spec, period, check, actions, versions, new_versions, get_settings().locale
    )
    path = get_settings().output_dir / "reports" / f"adjustments-{spec.id}-{period.name}.html"
    write_report(path, html)
    record_report(conn, "adjustment_report", spec.id, period.name, path)
    conn.commit()
    return str(path.resolve())


@flow(name="act", flow_run_name="act {campaign_id} {period}")
def act_flow(
    campaign_id: str,
    period: str,
    auto_approve: bool = False,
    approval_timeout: int | None = None,
) -> dict[str, Any]:
    """Propose adjustments for the period, get them decided, update the SOP, report."""
    when = Period.parse(period)  # parsed once: the stage's tasks take the Period
    settings = get_settings()
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        spec = get_campaign_spec(conn, campaign_id)
        check = read_check_result(conn, campaign_id, when)
    if check is None:
        check = CheckResult.from_json(check_flow(campaign_id=campaign_id, period=when.name))
    with engine.connect() as conn:
        proposals = propose_adjustments(conn, spec, when, check)
        guarded = apply_guardrails(conn, spec, when, check)
        actions = store_proposals(conn, campaign_id, when, [*proposals, *guarded.resumes])
    answers = collect_decisions(  # no connection is held while the run waits for people
        campaign_id,
        when,
        [action for action in actions if action.status == PROPOSED],
        auto_approve=auto_approve,
        timeout=approval_timeout or settings.act_approval_timeout,
    )
    with engine.connect() as conn:
        decided = [record_decision(conn, action_id, answer) for action_id, answer in answers]
        approved_now = [action for action in decided if action.status == APPROVED]
        new_versions = update_sop_versions(conn, spec, [*guarded.applied, *approved_now])
        actions = stored_actions(conn, campaign_id, when)
        report = write_adjustment_report(conn, spec, when, check, actions, new_versions)
        sop = sop_versions(conn, campaign_id)[-1]
    engine.dispose()
    result = ActResult(
        campaign=campaign_id,
        period=when.name,
        trusted=check.trusted is True,
        actions=actions,
        sop_path=str(sop_path(settings.output_dir, campaign_id, sop.version).resolve()),
        sop_version=sop.version,
        sop_changes=[entry for record in new_versions for entry in record.changes()],
        report_path=report,
    )
    publish_act(result, settings.output_dir, settings.reports_url)
    return result.to_json()


def collect_decisions(
    campaign_id: str,
    period: Period,
    undecided: list[StoredAction],
    *,
    auto_approve: bool,
    timeout: int,
) -> list[tuple[int, ProposalDecision | dict[str, Any]]]:
    """(action_id, decision) for the proposals decided now: all of them when
    auto-approving; else those a manager answered in the Prefect UI before the timeout.

    `hold` needs no decision: it changes no rule (`tasks.common.rules.changes_rules`) and
    is recorded as proposed. `--auto-approve` leaves a `resume` to a manager
    (`tasks.act.guardrails.MANAGER_ONLY`): lifting a guardrail's pause needs a name."""
    logger = get_run_logger()
    decidable = [action for action in undecided if changes_rules(action.type)]
    if not decidable:
        return []
    if auto_approve:
        return [
            (action.action_id, auto_decision(action.action_id))
            for action in decidable
            if action.type not in MANAGER_ONLY
        ]
    if not prefect_api_url_set():
        logger.warning(
            "%s\nNo Prefect server: nobody can answer this run's pause, so they stay "
            "proposed. Decide them with: %s",
            waiting_list(decidable),
            decide_command(decidable),
        )
        return []
    emit_awaiting_approval(campaign_id, period.name, [action.to_json() for action in decidable])
    logger.warning(
        "%s\nDecide them in the run's form at %s or with: %s",
        waiting_list(decidable),
        url_for("flow-run", obj_id=FlowRunContext.get().flow_run.id) or "the Prefect UI",
        decide_command(decidable),
    )
    deadline = time.monotonic() + timeout
    answers = []
    for action in decidable:
        if not still_proposed(action.action_id):
            continue  # decided meanwhile from the command line (`pdca actions`)
        remaining = int(deadline - time.monotonic())
        answer = ask_manager(action, remaining) if remaining > 0 else None
        if answer is None:
            logger.info("approval timed out: the remaining proposals stay proposed")
            break
        answers.append((action.action_id, answer))
    return answers


def waiting_list(actions: list[StoredAction]) -> str:
    """The proposals that wait for a decision, one line each."""
    lines = [f"{len(actions)} proposal(s) await a decision:"]
    for action in actions:
        lines.append(f"  {action.action_id:>5}  {action.type:<18} {format_scope(action.scope)}")
    return "\n".join(lines)


def decide_command(actions: list[StoredAction]) -> str:
    """The command line that approves them (reject is the same with `reject`)."""
    ids = " ".join(str(action.action_id) for action in actions)
    return f"pdca actions approve {ids} --by NAME [--comment TEXT]  (or: reject)"


def still_proposed(action_id: int) -> bool:
    """Whether nobody has decided the action since this run stored it."""
    engine = make_engine(get_settings().database_url)
    try:
        with engine.connect() as conn:
            action = read_action(conn, action_id)
    finally:
        engine.dispose()
    return action is not None and action.status == PROPOSED


def ask_manager(action: StoredAction, timeout: int) -> ProposalDecision | None:
    """Pause the run until a manager decides `action` in the UI; None on timeout (the run
    is then set running again, so that it finishes and reports what was decided)."""
    form = decision_form(action)
    try:
        return pause_flow_run(
            wait_for_input=form,
            timeout=timeout,
            poll_interval=get_settings().act_approval_poll_seconds,
            key=f"action-{action.action_id}",
        )
    except FlowPauseTimeout:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                FlowRunContext.get().flow_run.id,
                Running(message="approval timed out; proposals stay proposed"),
                force=True,
            )
        return None


def auto_decision(action_id: int) -> dict[str, Any]:
    """An approval by `--auto-approve`, naming the OS user who ran it."""
    import getpass

    return {
        "decision": "approve",
        "reviewer": AUTO_APPROVER,
        "comment": f"approved by --auto-approve, run by {getpass.getuser()}",
        "amount": None,
    }


def prefect_api_url_set() -> bool:
    """True when runs report to a Prefect API at a URL (a server someone else can reach),
    not to the embedded one that belongs to this process alone."""
    return bool(get_current_settings().api.url)


if __name__ == "__main__":
    import sys

    print(act_flow(campaign_id=sys.argv[1], period=sys.argv[2], auto_approve=True))
