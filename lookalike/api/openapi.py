"""OpenAPI descriptions of the bodies our endpoints read by hand (multipart or JSON on one route).

FastAPI documents only bodies it parses itself, so these are given as `openapi_extra`. Schemas are
inlined (no `$ref`): BentoML merges our routes into its own document at /docs.json and carries over
only the components that routes' declared models reference.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from lookalike.schemas import ErrorResponse

_WEIGHTS_TEXT = {
    "type": "string",
    "description": 'Facet weights as JSON ({"shape": 1, "color": 0.5, "detail": 0}) or as shape:1,color:0.5.',
    "example": "shape:1,color:0",
}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with every `$ref` replaced by its definition."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]]))
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def photo_body(json_model: type[BaseModel], form_options: type[BaseModel] | None) -> dict[str, Any]:
    """`openapi_extra` for a route taking the photo as multipart (`image`) or as JSON (`json_model`)."""
    json_schema = inline_schema(json_model)
    form_schema: dict[str, Any] = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "description": "The photo."}},
    }
    if form_options is not None:
        for name, prop in inline_schema(form_options)["properties"].items():
            form_schema["properties"][name] = _WEIGHTS_TEXT if name == "weights" else prop
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form_schema, "encoding": {"image": {"contentType": "image/*"}}},
                "application/json": {"schema": json_schema, "examples": _examples(json_schema)},
            },
        }
    }


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route reading a JSON body of `model` by hand."""
    schema = inline_schema(model)
    content = {"schema": schema, "examples": _examples(schema)}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def error_responses(*statuses: int) -> dict[int, dict[str, Any]]:
    """FastAPI `responses` for the error statuses a route can answer, all `ErrorResponse`."""
    described = {
        400: "Malformed request, or a filter value the catalogue does not have (the detail lists the accepted ones).",
        401: "No API key given (X-API-Key or Authorization: Bearer).",
        403: "This API key may not do this.",
        404: "No such product or shop.",
        408: "The body arrived too slowly (under 8 KB/s after 10 s).",
        413: "The body or the photo is too large.",
        415: "Neither multipart nor JSON, or a photo in a format we do not read.",
        422: "A field has the wrong type or range, or the photo is damaged.",
        503: "The vector store or a model is unreachable; retry after Retry-After seconds.",
    }
    return {status: {"model": ErrorResponse, "description": described[status]} for status in statuses}


def _examples(schema: dict[str, Any]) -> dict[str, Any]:
    return {f"example{index}": {"value": value} for index, value in enumerate(schema.get("examples", []), start=1)}
