"""The deployment file and work-pool template in infra/: every deployment points at a real flow with
parameters it accepts, recipes that load and valid schedules; GPU stages go to the GPU pool."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule

import flows.maintenance
import flows.stages
from flows.plan import STAGE_NAMES
from flows.recipe import load_recipe
from tests.conftest import ROOT

PREFECT_YAML = ROOT / "infra" / "prefect.yaml"
DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
GPU_FLOWS = {"sft_flow", "rl_flow", "evaluate_flow", "learning_flow"}
MODULES = {"flows/stages.py": flows.stages, "flows/maintenance.py": flows.maintenance}


def _flow(entrypoint: str) -> Flow:
    path, _, name = entrypoint.partition(":")
    flow = getattr(MODULES[path], name)
    assert isinstance(flow, Flow), entrypoint
    return flow


def test_every_stage_flow_and_the_pipeline_are_deployed_and_the_smoke_run_too() -> None:
    deployed = {d["entrypoint"].split(":")[1] for d in DEPLOYMENTS}
    assert deployed == {f"{stage}_flow" for stage in STAGE_NAMES} | {"pipeline_flow", "artifacts_gc_flow"}
    assert any(d["name"] == "smoke" and d["parameters"]["recipe"] == "recipes/smoke.yaml" for d in DEPLOYMENTS)
    assert len({(d["entrypoint"], d["name"]) for d in DEPLOYMENTS}) == len(DEPLOYMENTS)  # unique per flow


def test_the_stage_flows_are_built_when_first_named_and_a_wrong_name_is_an_attribute_error() -> None:
    """`prefect deploy` loads `flows/stages.py:pull_flow` as a fresh module per deployment: importing it builds
    the pipeline's flow only, and naming `pull_flow` builds that one (each flow's typed schema costs time)."""
    code = (
        "import flows.stages as s, prefect\n"
        "built = lambda: sorted(f.name for f in vars(s).values() if isinstance(f, prefect.Flow))\n"
        "print(built(), s.stage_flow.cache_info().currsize)\n"
        "print(s.pull_flow.name, s.pull_flow is s.stage_flow('pull'), s.stage_flow.cache_info().currsize)\n"
        "try:\n    s.pul_flow\nexcept AttributeError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "['rm-r1 pipeline'] 0",
        "pull True 1",
        "module 'flows.stages' has no attribute 'pul_flow'",
    ]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: f"{d['entrypoint'].split(':')[1]}/{d['name']}")
def test_a_deployment_has_parameters_its_flow_accepts_a_recipe_that_loads_and_valid_schedules(
    deployment: dict[str, Any],
) -> None:
    flow = _flow(deployment["entrypoint"])
    parameters = deployment["parameters"]
    flow.validate_parameters(parameters)  # raises on a name or type the flow does not take
    if "recipe" in parameters:  # the stage flows and the pipeline (retention takes none)
        load_recipe(ROOT / parameters["recipe"], parameters.get("overrides", []))
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    pool = deployment["work_pool"]
    gpu = deployment["entrypoint"].split(":")[1] in GPU_FLOWS or deployment["name"] == "paper"
    assert pool["name"] == ("rmr1-gpu" if gpu else "rmr1-cpu")
    if gpu:
        [request] = pool["job_variables"]["container_create_kwargs"]["device_requests"]
        assert request == {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


def test_the_examples_schedule_a_nightly_pull_a_weekly_distill_and_a_daily_evaluate() -> None:
    crons = {d["entrypoint"].split(":")[1]: [s["cron"] for s in d.get("schedules", [])] for d in DEPLOYMENTS}
    assert crons["pull_flow"] == ["0 2 * * *"]
    assert crons["distill_flow"] == ["0 3 * * 1"]
    assert crons["evaluate_flow"] == ["0 6 * * *"]


def test_the_kubernetes_gpu_template_defines_every_variable_it_uses() -> None:
    template = json.loads((ROOT / "infra" / "work-pools" / "gpu-kubernetes.json").read_text())
    used = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])))
    defined = set(template["variables"]["properties"])
    assert used <= defined, used - defined
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == "{{ node_selector }}" and spec["tolerations"] == "{{ tolerations }}"
    assert template["variables"]["properties"]["tolerations"]["default"][0]["key"] == "nvidia.com/gpu"
