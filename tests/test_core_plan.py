"""The plan: one node table from which every runner takes its step order and step parameters."""

from __future__ import annotations

import json

import pytest
from mlplat import plan
from mlplat.errors import GateFailed
from mlplat.kfp import step
from mlplat.registry import StageKind
from mlplat.runner import plan as runner_plan
from mlplat.spec import STEP_KINDS, parse_spec, resolve

from tests.conftest import TINY_SPEC

FULL = {**TINY_SPEC, "steps": {**TINY_SPEC["steps"], "validate": {"plugin": "tabular"},
                               "explain": {"plugin": "integrated_gradients"}, "drift": {"plugin": "evidently"}}}


def test_minimal_spec_runs_the_always_nodes_in_order() -> None:
    minimal = {**TINY_SPEC, "steps": {"train": TINY_SPEC["steps"]["train"]}}
    assert plan.build_plan(parse_spec(minimal)).names == ["ingest", "train", "evaluate", "publish"]


def test_optional_steps_add_nodes_in_pipeline_order() -> None:
    names = plan.build_plan(parse_spec(FULL)).names
    assert names == ["ingest", "validate", "train", "evaluate", "explain", "drift", "publish"]
    assert runner_plan(parse_spec(FULL)) == names  # the in-process runner records the plan's order


def test_slices_keep_the_data_nodes_and_drop_tune_for_training() -> None:
    spec = parse_spec({**FULL, "steps": {**FULL["steps"], "augment": {"plugin": "smote"},
                                         "tune": {"plugin": "grid", "search_space": {}}}})
    built = plan.build_plan(spec)
    assert built.until("train").names == ["ingest", "validate", "augment", "train"]
    assert built.until("tune").names == ["ingest", "validate", "augment", "tune"]
    with pytest.raises(ValueError, match="no tune step"):
        plan.build_plan(parse_spec(FULL)).until("tune")


def test_gates_sit_on_validate_and_evaluate() -> None:
    assert {n.name: n.gate for n in plan.NODES if n.gate} == {"validate": "validation", "evaluate": "evaluation"}
    plan.GateResult("evaluation", True, []).require()
    with pytest.raises(GateFailed, match="evaluation gate failed: accuracy too low"):
        plan.GateResult("evaluation", False, ["accuracy too low"]).require()


def test_spec_kinds_and_step_process_kinds_come_from_the_node_table() -> None:
    assert STEP_KINDS == {n.name: n.kind for n in plan.NODES if n.kind}
    assert STEP_KINDS["validate"] is StageKind.VALIDATOR
    assert step.KINDS == tuple(n.name for n in plan.NODES if n.name != "publish")
    paths = [p for p, _ in parse_spec(FULL).steps.plugin_steps()]
    assert paths == [n for n in plan.build_plan(parse_spec(FULL)).names if plan.node(n).kind]


def test_step_parameters_round_trip_for_every_node() -> None:
    spec = resolve(parse_spec(FULL))
    payload = spec.model_dump_json(by_alias=True)
    for name in plan.build_plan(spec).names[:-1]:
        plugin, params = step.step_parameters(spec, name)
        assert step.spec_for_step(payload, name, plugin, params) == spec, name
    changed = step.spec_for_step(payload, "evaluate", "", json.dumps({"min_accuracy": 0.5}))
    assert changed.steps.evaluate.params.min_accuracy == 0.5


def test_compiled_task_names_are_the_plan_nodes() -> None:
    pytest.importorskip("kfp")
    from mlplat.kfp.compiler import build_pipeline

    spec = resolve(parse_spec(FULL))
    graph = build_pipeline(spec)
    tasks = set(graph.pipeline_spec.root.dag.tasks)
    for sub in graph.pipeline_spec.components.values():
        tasks |= set(sub.dag.tasks) if sub.HasField("dag") else set()
    built = plan.build_plan(spec)
    gates = {t for t in tasks if t.startswith("gate")}  # one gate task after each gated node: "gate", "gate-2"
    assert tasks - gates == set(built.names)
    assert len(gates) == sum(1 for n in built.nodes if n.gate)


def test_the_in_process_runner_executes_exactly_the_plan_nodes() -> None:
    from mlplat import runner
    from mlplat.plan import NODES

    assert list(runner._EXECUTE) == [n.name for n in NODES]
