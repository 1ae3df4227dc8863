"""Write ``kserve_schemas.json``: the parts of KServe's CRD schemas that deploy/kserve/ uses.

KServe's full CRDs are megabytes (every PodSpec field, twice), so the test data keeps, of each
kind's ``openAPIV3Schema``, the properties that deploy/kserve/inferenceservice.yaml sets, each
with its whole subschema, and every ``required`` list as it is. A field the manifest gains later
is then "unknown" to the vendored schema and the test fails: run this again, against the CRDs
of the KServe release you target, to bring its schema in.

    cd <kserve checkout> && crd=config/crd/full
    git show <commit>:$crd/serving.kserve.io_inferenceservices.yaml > /tmp/isvc.yaml
    git show <commit>:$crd/serving.kserve.io_servingruntimes.yaml > /tmp/sr.yaml
    python tests/deploy/vendor_kserve_schemas.py <commit> /tmp/isvc.yaml /tmp/sr.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
MANIFEST = HERE.parents[1] / "deploy" / "kserve" / "inferenceservice.yaml"


def prune(schema: dict[str, Any], used: Any) -> dict[str, Any]:
    """``schema`` keeping only the properties present in ``used`` (a manifest value), at every
    depth; the subschema of a leaf value is kept whole."""
    pruned = dict(schema)
    if isinstance(used, dict) and "properties" in schema:
        pruned["properties"] = {
            key: prune(sub, used[key]) for key, sub in schema["properties"].items() if key in used
        }
    if isinstance(used, list) and isinstance(schema.get("items"), dict):
        merged: dict[str, Any] = {}
        for item in used:
            merged = _merge(merged, item)
        pruned["items"] = prune(schema["items"], merged if merged else None)
    return pruned


def _merge(left: Any, right: Any) -> Any:
    """Union of two manifest values' keys (for the items of one list)."""
    if isinstance(left, dict) and isinstance(right, dict):
        out = dict(left)
        for key, value in right.items():
            out[key] = _merge(out[key], value) if key in out else value
        return out
    return right


def main(commit: str, *crd_paths: str) -> None:
    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    kinds: dict[str, Any] = {}
    for crd_path in crd_paths:
        crd = yaml.safe_load(Path(crd_path).read_text())
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            used = [d for d in documents if (d["apiVersion"], d["kind"]) == (api_version, kind)]
            if used:
                merged: dict[str, Any] = {}
                for doc in used:
                    merged = _merge(merged, doc)
                schema = version["schema"]["openAPIV3Schema"]
                kinds[f"{api_version}/{kind}"] = prune(schema, merged)
    out = {
        "source": f"github.com/kserve/kserve@{commit}: config/crd/full/ "
        "serving.kserve.io_inferenceservices.yaml and serving.kserve.io_servingruntimes.yaml, "
        "openAPIV3Schema pruned to the fields of deploy/kserve/inferenceservice.yaml "
        "(tests/deploy/vendor_kserve_schemas.py)",
        "schemas": kinds,
    }
    (HERE / "kserve_schemas.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
