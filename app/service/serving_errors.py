"""Why a model request or a repository call cannot be served: each carries its HTTP status
and a message for the client (answered by :mod:`app.service.error_answers` on every route and
over gRPC)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class ServingError(Exception):
    """A refusal with its HTTP ``status_code``, ``message`` and extra ``headers``."""

    status_code = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class ModelNotLoaded(ServingError):
    """The requested model is not loaded (404); the message names the loaded ones."""

    status_code = 404

    def __init__(self, name: str, loaded: Iterable[str]) -> None:
        names = ", ".join(sorted(loaded)) or "none"
        super().__init__(f"model {name!r} is not loaded; loaded models: {names}")


class ModelUnavailable(ServingError):
    """The model is known but cannot answer now: loading or failed (503, ``Retry-After``)."""

    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "5"})


class ModelControlDisabled(ServingError):
    """Load or unload asked while ``MODEL_CONTROL=none`` (403)."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "model control is disabled (MODEL_CONTROL=none): the loaded models are fixed at "
            "start; set MODEL_CONTROL=explicit to load and unload through the API"
        )


class ModelLoadFailed(ServingError):
    """A load (or reload) failed; whatever served before still serves (400)."""

    status_code = 400


class UnknownModel(ServingError):
    """A repository call named a model the store does not hold (404)."""

    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not in the model store")
