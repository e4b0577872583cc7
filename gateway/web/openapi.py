"""The console API's OpenAPI document, as FastAPI builds it and then made to say what the
API does on errors and logins.

FastAPI declares the security schemes of the guards (``bearerAuth``, ``sessionCookie`` of
``gateway.web.deps``) on each guarded operation; ``document`` then:

- adds the ``Problem`` and ``ValidationProblem`` schemas (RFC 9457) and answers every error
  response of every operation (4xx, 5xx) with ``application/problem+json`` of them, in place
  of FastAPI's ``HTTPValidationError``;
- adds the refusals (401, 403) to every guarded operation, and a 500 to every one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from gateway.web.deps import REFUSALS
from gateway.web.errors import PROBLEM_JSON


class Problem(BaseModel):
    """An RFC 9457 problem document: what every error of the API answers."""

    type: str = Field(description="the kind of problem, a URI (https://edigw.dev/problems/…"
                                  " or about:blank)")
    title: str = Field(description="the kind of problem, in words")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="this occurrence, in words")
    instance: str = Field(description="the path asked for")
    model_config = {"extra": "allow", "json_schema_extra": {"additionalProperties": True}}


class FieldError(BaseModel):
    location: str = Field(description="where: query.limit, body.username, path.token_id …")
    message: str
    type: str = Field(description="pydantic's error type (missing, less_than_equal …)")


class ValidationProblem(Problem):
    """A request that failed validation (422): each refused input in ``errors``."""

    errors: list[FieldError]


_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_VALIDATION = {"$ref": "#/components/schemas/ValidationProblem"}
_UNEXPECTED = {"description": "an unexpected error (logged; the document names its "
                              "error_id)"}


def _schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in (Problem, ValidationProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _is_error(code: str) -> bool:
    return code.isdigit() and int(code) >= 400 or code in ("4XX", "5XX", "default")


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with its problem documents and refusals."""
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes, servers=app.servers)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                for code, refusal in REFUSALS.items():
                    responses.setdefault(code, dict(refusal))
            responses.setdefault("500", dict(_UNEXPECTED))
            for code, response in responses.items():
                if _is_error(code):
                    response["content"] = {PROBLEM_JSON: {
                        "schema": _VALIDATION if code == "422" else _PROBLEM}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_schemas())
    return spec


def install(app: FastAPI) -> None:
    """Serve ``document(app)`` as ``app.openapi()`` (built once)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["FieldError", "Problem", "ValidationProblem", "document", "install"]
