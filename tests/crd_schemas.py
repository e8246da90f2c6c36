"""What the API server would check: the vendored CRDs (tests/fixtures/crds, see its README) as JSON Schemas.

A CRD's structural schema prunes or (with `kubectl apply --validate=strict`, the default since 1.25)
refuses fields it does not declare, unless a node says `x-kubernetes-preserve-unknown-fields`. JSON
Schema allows unknown properties by default, so `structural()` turns each declared object into a closed
one (`additionalProperties: false`) and maps the Kubernetes extensions onto JSON Schema
(`x-kubernetes-int-or-string`, `nullable`, embedded resources). The root's `metadata`, which a CRD
declares only as `type: object`, is checked as the API server checks it: against ObjectMeta, from
kubernetes-validate's definitions. CEL rules (`x-kubernetes-validations`) are not evaluated here.

Katib's CRD preserves every field (its webhook checks an Experiment), so its Experiment is checked
against the OpenAPI definitions Katib generates from its Go types (`pkg/apis/v1beta1/swagger.json`),
closed the same way; the trial template inside it is a core kind, checked by kubernetes-validate.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

CRDS = Path(__file__).resolve().parent / "fixtures" / "crds"
K8S_VERSION = "1.31"  # the oldest Kubernetes the KServe 0.20 / Trainer 2.3 releases support
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
CRD_FILES = {  # (apiVersion, kind) -> the vendored CRD that defines it
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-v0.20.0-inferenceservices.yaml.gz",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainer-v2.3.0-trainjobs.yaml.gz",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-v0.93.0-podmonitors.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator-v0.93.0-servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator-v0.93.0-prometheusrules.yaml",
}
KATIB = ("kubeflow.org/v1beta1", "Experiment")
KATIB_SWAGGER = "katib-v0.19.0-swagger.json"
CORE_GROUPS = ("apps", "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io")


def read_crd(name: str) -> dict[str, Any]:
    path = CRDS / name
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return yaml.safe_load(text)


def structural(node: Any) -> Any:
    """A CRD (or Katib swagger) schema node as JSON Schema that refuses undeclared fields."""
    if isinstance(node, list):
        return [structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "default", "example"):
            continue
        # under `properties` the keys are field names, not keywords
        out[key] = {n: structural(s) for n, s in value.items()} if key == "properties" else structural(value)
    if node.get("x-kubernetes-embedded-resource"):  # apiVersion, kind and metadata are implied
        implied = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
        out["properties"] = {**implied, **out.get("properties", {})}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def _k8s_definitions() -> Resource[Any]:
    import kubernetes_validate

    path = (Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}.0-local-strict"
            / "_definitions.json")
    return Resource.from_contents(json.loads(path.read_text()))


@cache
def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    """The closed JSON Schema of one custom resource kind, from its vendored CRD."""
    if (api_version, kind) == KATIB:
        return _katib_schema()
    crd = read_crd(CRD_FILES[(api_version, kind)])
    group, version = api_version.split("/")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind), CRD_FILES[(api_version, kind)]
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = structural(served["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


def _katib_schema() -> dict[str, Any]:
    swagger = json.loads((CRDS / KATIB_SWAGGER).read_text())
    definitions = {name: structural(d) for name, d in swagger["definitions"].items()}
    # the Go types Katib's spec does not define: Kubernetes' own, and the trial template (any object; checked below)
    definitions["v1.ObjectMeta"] = OBJECT_META
    definitions["v1.Container"] = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.Container"}
    definitions["v1.HTTPGetAction"] = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.HTTPGetAction"}
    definitions["v1.Time"] = {"type": "string"}
    definitions["v1.ListMeta"] = {"type": "object"}
    definitions["v1.unstructured.Unstructured"] = {"type": "object", "required": ["apiVersion", "kind"]}
    root = dict(definitions["v1beta1.Experiment"])
    root["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return {**root, "definitions": definitions}


def is_core(doc: dict[str, Any]) -> bool:
    api_version = doc["apiVersion"]
    return "/" not in api_version or api_version.split("/")[0] in CORE_GROUPS


def problems(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of one object (empty when the API server would accept it), by JSON path."""
    if is_core(doc):
        return _core_problems(doc)
    schema = schema_for(doc["apiVersion"], doc["kind"])
    validator = jsonschema.Draft202012Validator(schema, registry=Registry().with_resource(K8S_DEFS, _k8s_definitions()))
    found = [f"{doc['kind']} {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
             for e in validator.iter_errors(doc)]
    if (doc["apiVersion"], doc["kind"]) == KATIB and not found:
        trial = doc["spec"]["trialTemplate"].get("trialSpec")
        found += [f"Experiment trialTemplate.trialSpec: {p}" for p in (_core_problems(trial) if trial else [])]
    return found


def _core_problems(doc: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']} {'.'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []


def known(doc: dict[str, Any]) -> bool:
    """Whether this module can check `doc` (a core kind or one of the vendored CRDs)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    return is_core(doc) or key in CRD_FILES or key == KATIB


def documents(text: str) -> Iterator[dict[str, Any]]:
    """The Kubernetes objects in a YAML stream, the way kubectl reads them (go-yaml typing, see mlplat.k8s.goyaml)."""
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc
