"""The plan: the ordered nodes a resolved spec runs, in one table.

Each node names its step, the stage kind of its plugin (None for ingest, evaluate and publish),
the `Steps` field that configures it, the artifacts it reads and writes, and the gate that can
stop the run after it. Runners derive their step order and per-step parameters from here, so a
new step kind is one row in `NODES` (plus its spec field and step function).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlplat.registry import StageKind


@dataclass(frozen=True)
class Artifact:
    """A named, typed value passed between nodes: data (splits), findings, best_params or model."""

    name: str
    optional: bool = False


@dataclass(frozen=True)
class Node:
    name: str
    kind: StageKind | None
    field: str | None  # the `Steps` attribute that configures it; None: nothing to configure
    inputs: tuple[Artifact, ...]
    outputs: tuple[Artifact, ...]
    gate: str | None = None  # "validation" | "evaluation": the run stops here when it fails
    always: bool = False  # runs whatever the spec says (ingest, train, evaluate, publish)
    data_step: bool = False  # prepares the splits every later node reads

    def configured(self, spec: Any) -> Any:
        """The spec's settings for this node (a step, a list for a chain), or None."""
        return getattr(spec.steps, self.field) if self.field else None

    def present(self, spec: Any) -> bool:
        return self.always or bool(self.configured(spec))


DATA, FINDINGS, BEST, MODEL = Artifact("data"), Artifact("findings"), Artifact("best_params"), Artifact("model")

NODES: tuple[Node, ...] = (
    Node("ingest", None, None, (), (DATA,), always=True, data_step=True),
    Node("validate", StageKind.VALIDATOR, "validate_", (DATA,), (FINDINGS,), gate="validation", data_step=True),
    Node("augment", StageKind.AUGMENTER, "augment", (DATA, Artifact("findings", optional=True)), (DATA,), data_step=True),
    Node("tune", StageKind.TUNER, "tune", (DATA,), (BEST,)),
    Node("train", StageKind.TRAINER, "train", (DATA, Artifact("best_params", True), Artifact("findings", True)), (MODEL,),
         always=True),
    Node("evaluate", None, "evaluate", (DATA, MODEL), (MODEL,), gate="evaluation", always=True),
    Node("explain", StageKind.EXPLAINER, "explain", (DATA, MODEL), (MODEL,)),
    Node("drift", StageKind.DRIFT_DETECTOR, "drift", (MODEL,), (MODEL,)),  # fits the drift reference
    Node("publish", None, None, (MODEL,), (), always=True),
)
BY_NAME = {node.name: node for node in NODES}
STEP_PROCESS_KINDS = tuple(n.name for n in NODES if n.name != "publish")  # publish is the runner's own effect


def node(name: str) -> Node:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown step {name!r}; expected one of {', '.join(BY_NAME)}") from None


def plugin_kinds() -> dict[str, StageKind]:
    """Spec step key -> stage kind, for every node that runs a plugin."""
    return {n.name: n.kind for n in NODES if n.kind is not None}


@dataclass(frozen=True)
class Plan:
    nodes: tuple[Node, ...]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def until(self, name: str) -> Plan:
        """What a job that runs only `name` needs: the data nodes before it, then it (the TrainJob:
        up to train, without tune, whose params come fixed; the Katib trial: up to tune)."""
        target = node(name)
        if target not in self.nodes:
            raise ValueError(f"the spec has no {name} step")
        return Plan(tuple(n for n in self.nodes[:self.nodes.index(target)] if n.data_step) + (target,))


def build_plan(spec: Any) -> Plan:
    """The nodes a resolved spec runs, in order."""
    return Plan(tuple(n for n in NODES if n.present(spec)))


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reasons: list[str]
    report: str | None = None

    def require(self) -> None:
        from mlplat.errors import GateFailed

        if not self.passed:
            raise GateFailed(self.gate, self.reasons, self.report)
