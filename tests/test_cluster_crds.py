"""What the vendored CRDs (tests/fixtures/crds, see its README) let the API server check."""

from __future__ import annotations

from pathlib import Path

import yaml

CRDS = Path(__file__).resolve().parent / "fixtures" / "crds"


def test_katibs_experiment_crd_leaves_every_check_to_its_webhook() -> None:
    """Katib v0.19.0's CRD preserves unknown fields: a schema check proves nothing, so the webhook's rules
    run offline in mlplat.k8s.katib.validate_experiment instead."""
    crd = yaml.safe_load((CRDS / "katib-v0.19.0-experiment.yaml").read_text())
    assert (crd["kind"], crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (
        "CustomResourceDefinition", "kubeflow.org", "Experiment")
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    assert version["schema"]["openAPIV3Schema"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
