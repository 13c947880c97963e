"""Everything the project declares loads: prefect.yaml entrypoints, suites, SQL files."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from pdca.settings import PROJECT_ROOT
from tasks.common.feeds import FEED_NAMES

DEPLOYMENTS = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_imports_a_flow(deployment: dict) -> None:
    path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
    flow = getattr(module, name)
    assert hasattr(flow, "deploy"), f"{deployment['entrypoint']} is not a Prefect flow"
    unknown = set(deployment.get("parameters", {})) - set(flow.parameters.properties)
    assert not unknown, f"{deployment['name']}: parameters the flow does not take: {unknown}"


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_every_feed_has_a_suite(feed: str) -> None:
    import great_expectations as gx

    document = json.loads((PROJECT_ROOT / "expectations" / f"{feed}.json").read_text())
    suite = gx.ExpectationSuite(**document)
    assert suite.name == feed
    assert suite.expectations, f"suite {feed} has no expectations"


def test_only_the_scheduled_review_sends_by_default() -> None:
    """A Quick Run of the weekly-review stage in the UI must not e-mail the managers."""
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    assert by_name["weekly-review"]["parameters"]["send"] is False
    assert by_name["weekly"]["parameters"]["send"] is True
