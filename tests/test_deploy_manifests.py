"""deploy/kubernetes/ against the Kubernetes API schema of a pinned version (kubernetes-validate,
strict: no unknown field), and what the manifests promise: the image this version builds, no
privileged container, the probes on /healthz, the node name from the downward API, the
agents forwarding to the collector's Service."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy/kubernetes").glob("*.yaml"))
KUBERNETES = "1.36.0"  # kubelet 1.36 vendors the cAdvisor v0.56.2 oomtrace matches


def _docs() -> list[dict]:
    return [d for f in MANIFESTS for d in yaml.safe_load_all(f.read_text()) if d]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_valid_against_the_api_schema(path):
    import kubernetes_validate

    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_images_are_this_versions():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for doc in _docs():
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert c["image"] == f"oomtrace:{version}", (doc["metadata"]["name"], c["image"])


def test_the_agent_and_the_collector_fit_together():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    agent = docs["DaemonSet", "oomtrace-agent"]["spec"]["template"]["spec"]
    container = agent["containers"][0]
    assert agent["hostPID"] and not container["securityContext"].get("privileged")
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["path"] == "/healthz"
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    service = docs["Service", "oomtrace-collector"]
    forward = container["args"][container["args"].index("--forward") + 1]
    namespace = service["metadata"]["namespace"]
    assert forward == f"tcp://{service['metadata']['name']}.{namespace}.svc:{service['spec']['ports'][0]['port']}"
    collector = docs["StatefulSet", "oomtrace-collector"]["spec"]["template"]["spec"]["containers"][0]
    assert "--shared-key-file" in collector["args"] and "--shared-key-file" in container["args"]
    assert collector["securityContext"]["capabilities"]["drop"] == ["ALL"]
