"""The v2 routes' OpenAPI document tells the truth: schemathesis fuzzes them (over the fake
engine, in process) and every answer's status, content type and body must be documented."""

from __future__ import annotations

from typing import Any

from openapi_fuzzing import fuzz_operations


def test_v2_routes_in_the_openapi_document(oip: Any, engine: Any) -> None:
    schema = oip.make_app(engine).openapi()
    paths = schema["paths"]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/{name}/config",
        "/v2/models/{name}/versions/{version}/config",
    } == set(paths)
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "version"]
    body = infer["requestBody"]["content"]
    assert set(body) == {"application/json", "application/octet-stream"}
    assert "$ref" not in str(body)  # inlined: the schema stands alone
    assert set(infer["responses"]) == {
        "200",
        "400",
        "401",
        "404",
        "413",
        "415",
        "422",
        "503",
        "504",
    }


def test_openapi_fuzzing(oip: Any, engine: Any) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_asgi("/openapi.json", oip.make_app(engine))

    def call(case: Any) -> Any:
        if case.path_parameters:  # a real model, so generated bodies reach the codec
            case.path_parameters["name"] = oip.model
            if "version" in case.path_parameters:
                case.path_parameters["version"] = oip.version
        return case.call()

    calls, failures = fuzz_operations(schema, max_examples=25, call=call)
    assert calls >= 100
    assert failures == [], "\n".join(failures[:5])
