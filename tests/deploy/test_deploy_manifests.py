"""deploy/: the Kubernetes manifests against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail), the KServe ones against KServe's CRD schemas (vendored in
kserve_schemas.json, see vendor_kserve_schemas.py), and against each other and the service
(ports, probe routes, drain time). Nothing here ran on a cluster."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
#: The oldest Kubernetes the manifests claim (HPA v2 behavior, startup probes), and the newest
#: kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(paths: list[Path]) -> dict[str, dict[str, Any]]:
    found = {doc["kind"]: doc for path in paths for doc in documents(path)}
    return found


def strict(schema: Any) -> Any:
    """``schema`` with unknown fields rejected where Kubernetes' strict field validation
    rejects them: every object with ``properties`` and no other rule for extra keys."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def kserve_validator(doc: dict[str, Any]) -> jsonschema.Draft7Validator:
    vendored = json.loads((Path(__file__).parent / "kserve_schemas.json").read_text())
    schema = vendored["schemas"][f"{doc['apiVersion']}/{doc['kind']}"]
    return jsonschema.Draft7Validator(strict(schema))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S, ids=[p.name for p in K8S])
def test_kubernetes_manifests_are_valid(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_catches_mistakes() -> None:
    deployment = by_kind(K8S)["Deployment"]
    typo = copy.deepcopy(deployment)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kserve_manifests_match_the_crd_schemas() -> None:
    docs = documents(KSERVE)
    assert [d["kind"] for d in docs] == ["ServingRuntime", "InferenceService"]
    for doc in docs:
        errors = [e.message for e in kserve_validator(doc).iter_errors(doc)]
        assert errors == [], doc["kind"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(minReplicas="one"), "'one' is not of type 'integer'"),
        (lambda p: p["model"].update(protocolVersion=2), "2 is not of type 'string'"),
        (lambda p: p["model"].update(readinesProbe={}), "Additional properties"),
        (lambda p: p["model"]["modelFormat"].pop("name"), "'name' is a required property"),
    ],
    ids=["type", "protocol_type", "unknown_field", "required"],
)
def test_kserve_validation_catches_mistakes(mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(documents(KSERVE)[1])
    mutate(broken["spec"]["predictor"])
    messages = [e.message for e in kserve_validator(broken).iter_errors(broken)]
    assert any(expected in m for m in messages), messages


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _check_serving_container(container: dict[str, Any], probes: dict[str, Any], grace: int) -> None:
    """Probes on the v2 health routes at the served port; the grace period covers the preStop
    pause, uvicorn's graceful timeout and the queue drain (REQUEST_TIMEOUT_S)."""
    from app.service.settings import Settings

    port = int(_arg(container["args"], "--port"))
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for name in ("readinessProbe", "livenessProbe"):
        assert _container_port(container, probes[name]["httpGet"]["port"]) == port
    assert container["ports"][0]["containerPort"] == port
    pause = int(probes["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = float(_arg(container["args"], "--graceful-timeout"))
    default_drain = Settings.model_fields["request_timeout_s"].default
    drain = float(_env(container).get("REQUEST_TIMEOUT_S", default_drain))
    assert grace >= pause + graceful + drain


def test_kubernetes_manifests_fit_together_and_the_service() -> None:
    kinds = by_kind(K8S)
    deployment, service, hpa = (
        kinds["Deployment"],
        kinds["Service"],
        kinds["HorizontalPodAutoscaler"],
    )
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    _check_serving_container(container, container, pod["spec"]["terminationGracePeriodSeconds"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    grpc_port = _container_port(container, "grpc")
    assert int(_env(container)["GRPC_PORT"]) == grpc_port
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_kserve_manifests_fit_together_and_the_service() -> None:
    runtime, inference = documents(KSERVE)
    predictor = inference["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    (container,) = runtime["spec"]["containers"]
    merged = {**container, "env": container.get("env", []) + model.get("env", [])}
    _check_serving_container(merged, model, predictor["terminationGracePeriodSeconds"])
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["containerConcurrency"] >= predictor["scaleTarget"]
