"""Schemathesis over every operation of an OpenAPI document, shared by the tests that fuzz the
service's own document (over HTTP) and the v2 routes' (in process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def fuzz_operations(
    schema: Any, *, max_examples: int, call: Callable[[Any], Any]
) -> tuple[int, list[str]]:
    """Up to ``max_examples`` generated cases per operation of the schemathesis ``schema``
    (explicit examples first, no deadline, no example database), each sent by ``call(case)``
    and its response checked against the document: status, content type and body.

    Every check runs but "a schema-valid request is accepted": a schema cannot say everything
    a request must be (a binary schema cannot say that an image needs 16 px per side, nor a v2
    body that its tensors must fit the model), so such a request gets its documented 4xx.

    Returns:
        ``(cases sent, failures)``, a failure as ``"METHOD path: what failed"``.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import FailureGroup, positive_data_acceptance

    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = call(case)
            try:
                case.validate_response(response, excluded_checks=[positive_data_acceptance])
            except (AssertionError, FailureGroup) as exc:  # collect all, report at the end
                failures.append(f"{case.method} {case.formatted_path}: {exc}")

        run()
    return calls, failures
