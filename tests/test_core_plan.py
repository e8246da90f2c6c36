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


EVERY_STEP = {**FULL, "steps": {**FULL["steps"], "augment": {"plugin": "smote"}, "tune": {"plugin": "grid", "search_space": {
    "lr": {"type": "categorical", "choices": [0.01]}}}}}


@pytest.mark.parametrize("data", [{**TINY_SPEC, "steps": {"train": TINY_SPEC["steps"]["train"]}}, FULL, EVERY_STEP],
                         ids=["minimal", "full", "every-step"])
def test_compiled_tasks_and_their_wiring_are_the_plan(data: dict) -> None:
    """One task per plan node; each artifact input comes from the last node before it that wrote the artifact
    (under the name the node writes it: NAME, or NAME_out where it also reads it); a gate task after each gated
    node reads that node's working directory, and every later task waits for it."""
    pytest.importorskip("kfp")
    from mlplat.kfp.compiler import build_pipeline

    spec = resolve(parse_spec(data))
    dag = build_pipeline(spec).pipeline_spec.root.dag
    built = plan.build_plan(spec)
    gates = {t for t in dag.tasks if t.startswith("gate")}  # one gate task after each gated node: "gate", "gate-2"
    assert set(dag.tasks) - gates == set(built.names)
    assert len(gates) == sum(1 for n in built.nodes if n.gate)

    def wiring(task: str) -> dict[str, tuple[str, str]]:
        artifacts = dag.tasks[task].inputs.artifacts
        return {k: (a.task_output_artifact.producer_task, a.task_output_artifact.output_artifact_key) for k, a in artifacts.items()}

    last_writer: dict[str, tuple[str, str]] = {}
    passed_gates: list[str] = []
    for node in built.nodes:
        assert wiring(node.name) == {a.name: last_writer[a.name] for a in node.inputs if a.name in last_writer}, node.name
        assert all(a.optional or a.name in last_writer for a in node.inputs), node.name
        assert set(passed_gates) <= set(dag.tasks[node.name].dependent_tasks), node.name
        reads = {a.name for a in node.inputs}
        last_writer.update({a.name: (node.name, f"{a.name}_out" if a.name in reads else a.name) for a in node.outputs})
        if node.gate:
            [gate] = [g for g in gates if wiring(g).get("result", ("",))[0] == node.name]
            assert wiring(gate)["result"][1] == ("findings" if node.name == "validate" else "workdir")
            assert dag.tasks[gate].task_info.name == f"{node.gate}-gate"
            passed_gates.append(gate)
    assert wiring("train").get("best_params") == (("tune", "best_params") if "tune" in built.names else None)
    assert wiring("publish") == {"model": (built.names[-2], "model_out")}


def test_the_in_process_runner_executes_exactly_the_plan_nodes() -> None:
    from mlplat import runner
    from mlplat.plan import NODES

    assert list(runner._EXECUTE) == [n.name for n in NODES]
