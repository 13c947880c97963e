"""`pdca actions`: see Act's proposals and decide them from the command line.

With a Prefect server (PREFECT_API_URL), a proposal that an act run is waiting on is
decided by resuming that run with the same input the UI's form sends: the run records the
decision, its audit row and the SOP version itself, as if the manager had used the form.
A proposal no run is waiting on (no server, the run timed out, or a later proposal of a
run still paused on an earlier one) is decided here, with the same audit row and SOP
version; a run that reaches it later finds it decided and does not ask again.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Any

import typer

from pdca.db import make_engine, upgrade
from pdca.errors import UserError
from pdca.settings import get_settings

actions_app = typer.Typer(
    no_args_is_help=True, help="Act's proposals: list them, approve or reject them."
)

RESUME_WAIT_SECONDS = 120.0
"""How long approve/reject wait for a resumed run to record the decision."""


@actions_app.command("list")
def list_actions(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    period: Annotated[str | None, typer.Option(help="Only this period (2026-W12…).")] = None,
    status: Annotated[
        str | None, typer.Option(help="proposed, approved, rejected or applied.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """The proposals and actions, with their status and who decided."""
    from tasks.act.actions import find_actions
    from tasks.common.periods import Period

    when = Period.parse(period) if period else None
    url = get_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        found = find_actions(conn, campaign_id=campaign, period=when, status=status)
    engine.dispose()
    if as_json:
        import json

        rows = [{"action_id": a.action_id, **_where(a), **a.to_json()} for a in found]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not found:
        typer.echo("no actions match", err=True)
        return
    for action in found:
        typer.echo(action_line(action))


@actions_app.command("approve")
def approve(
    action_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Action ids.")],
    by: Annotated[str, typer.Option("--by", help="Your name: recorded in the audit log.")],
    comment: Annotated[str, typer.Option(help="Why: recorded with the decision.")] = "",
    amount: Annotated[
        float | None,
        typer.Option(help="reallocate_budget: the amount to move instead of the proposed one."),
    ] = None,
) -> None:
    """Approve proposals: resumes the paused act run on a server, else records it."""
    _decide_all(action_ids, "approve", by, comment, amount)


@actions_app.command("reject")
def reject(
    action_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Action ids.")],
    by: Annotated[str, typer.Option("--by", help="Your name: recorded in the audit log.")],
    comment: Annotated[str, typer.Option(help="Why: recorded with the decision.")] = "",
) -> None:
    """Reject proposals: resumes the paused act run on a server, else records it."""
    _decide_all(action_ids, "reject", by, comment, None)


def action_line(action: Any) -> str:
    """One action in a line: id, campaign, period, status, type, scope, who decided."""
    from tasks.common.scopes import format_scope

    who = f" by {action.decided_by} {action.decided_at}" if action.decided_by else ""
    return (
        f"{action.action_id:>5}  {action.campaign_id}  {action.period}  {action.status:<9} "
        f"{action.type:<18} {format_scope(action.scope)}{who}"
    )


def _where(action: Any) -> dict[str, Any]:
    return {"campaign": action.campaign_id, "period": action.period}


def _decide_all(
    action_ids: list[int], decision: str, by: str, comment: str, amount: float | None
) -> None:
    """Decide each action; exit 1 if any could not be (the others are still decided)."""
    if not by.strip():
        raise UserError("--by: a decision needs the name of who took it")
    failed = 0
    for action_id in action_ids:
        try:
            typer.echo(decide_one(action_id, decision, by, comment, amount))
        except UserError as error:
            typer.echo(f"pdca: error: {error}", err=True)
            failed += 1
    if failed:
        raise typer.Exit(1 if failed < len(action_ids) else 2)


def decide_one(action_id: int, decision: str, by: str, comment: str, amount: float | None) -> str:
    """Decide one proposal, through its paused run when one waits on it; a line to print."""
    from tasks.act.actions import read_action
    from tasks.act.types import PROPOSED

    url = get_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            action = read_action(conn, action_id)
        if action is None:
            raise UserError(f"action {action_id}: no such action")
        if action.status != PROPOSED:
            raise UserError(f"action {action_id}: already {action.status} by {action.decided_by}")
        run_id = _paused_run_waiting_on(action_id)
        if run_id is not None:
            answer = {"decision": decision, "reviewer": by, "comment": comment}
            if amount is not None:
                answer["amount"] = amount
            _resume(run_id, answer)
            decided = _wait_until_decided(engine, action_id)
            return f"{action_line(decided)}  (resumed act run {run_id})"
        decided = record_here(engine, action_id, decision, by, comment, amount)
        return action_line(decided)
    finally:
        engine.dispose()


def record_here(
    engine: Any, action_id: int, decision: str, by: str, comment: str, amount: float | None
) -> Any:
    """The decision recorded by this command, with its audit row and, for an approval,
    the SOP version it makes (as the act run would have)."""
    from tasks.act.actions import decide
    from tasks.act.sop import sop_versions, update_sop, write_sop_files
    from tasks.act.types import APPROVED
    from tasks.common.campaigns import get_campaign_spec
    from tasks.common.rules import approved_actions

    with engine.begin() as conn:
        decided = decide(conn, action_id, decision, decided_by=by, comment=comment, amount=amount)
        if decided.status == APPROVED:
            spec = get_campaign_spec(conn, decided.campaign_id)
            update_sop(
                conn,
                spec,
                approved_actions(conn, spec.id),
                [decided],
                today=date.today(),
                default_locale=get_settings().locale,
            )
    if decided.status == APPROVED:
        with engine.connect() as conn:
            write_sop_files(get_settings().output_dir, sop_versions(conn, decided.campaign_id))
    return decided


def _paused_run_waiting_on(action_id: int) -> str | None:
    """The id of the act flow run paused on this action's form, when a server is set."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["act"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=200,
        )
    key = f"action-{action_id}"
    for run in runs:
        if run.state is not None and run.state.state_details.pause_key == key:
            return str(run.id)
    return None


def _resume(run_id: str, answer: dict[str, Any]) -> None:
    """Resume the run with `answer`, exactly as the UI's form does."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(UUID(run_id), run_input=answer)
    except (RuntimeError, ValueError) as error:  # the form refused the input, or timed out
        reason = str(error).strip().splitlines()[-1]
        raise UserError(f"act run {run_id} refused the decision: {reason}") from None


def _wait_until_decided(engine: Any, action_id: int) -> Any:
    """The action once the resumed run has recorded the decision."""
    from tasks.act.actions import read_action
    from tasks.act.types import PROPOSED

    deadline = time.monotonic() + RESUME_WAIT_SECONDS
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            action = read_action(conn, action_id)
        if action is not None and action.status != PROPOSED:
            return action
        time.sleep(1)
    raise UserError(
        f"action {action_id}: the act run was resumed but has not recorded the decision "
        f"after {RESUME_WAIT_SECONDS:.0f} s; see the run in the Prefect UI"
    )
