"""``python -m app.service.serve``: --host/--port/--workers default to HOST, PORT and
WEB_CONCURRENCY, so the image's exec-form CMD needs no shell."""

from __future__ import annotations

import pytest

from app.service.serve import parse_args


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args([])
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8000, 1)


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GRPC_PORT", "0")
    args = parse_args([])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9123, 3)
    explicit = parse_args(["--host", "127.0.0.1", "--port", "1234", "--workers", "2"])
    assert (explicit.host, explicit.port, explicit.workers) == ("127.0.0.1", 1234, 2)


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "")
    monkeypatch.setenv("PORT", " ")
    args = parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_several_workers_keep_grpc_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sibling workers share GRPC_PORT (tests/service/test_service_workers.py runs them)."""
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    monkeypatch.setenv("GRPC_PORT", "8081")
    assert parse_args([]).workers == 2


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "http", "PORT='http' is not an integer"),
        ("WEB_CONCURRENCY", "2.5", "WEB_CONCURRENCY='2.5' is not an integer"),
        ("PORT", "70000", "port 70000 is out of range"),
        ("WEB_CONCURRENCY", "0", "workers must be at least 1"),
    ],
)
def test_bad_variables_give_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str,
    message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
