"""The OpenAPI description of the HTTP API (`GET /openapi.json`), built from the served specs.

Request schemas say exactly what `requests.py` accepts (the same spec rules: types, nullability,
`min`/`max`, levels, `max_length`, the batch limit, the id's range), so a client generator or a
fuzzer (`schemathesis`, see `test_openapi_fuzz.py`) can rely on them: a body valid here is
answered 200, an invalid one 4xx.
"""

from __future__ import annotations

from typing import Any

from lifecycle_assets.serving.requests import DEFAULT_MAX_LENGTH, MAX_ID, MIN_ID
from lifecycle_assets.spec import FeatureSpec, ModelSpec

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "The body is not JSON or not an object with `records`, or a query parameter the "
        "operation does not take (or takes once) was given.",
        401: "Missing or wrong admin token (or webhook signature).",
        403: "Admin endpoints (or webhooks) are disabled: no token (secret) configured.",
        404: "The model is not served here.",
        413: "The body or the batch is over its limit.",
        415: "The body is compressed (`Content-Encoding`) or declared as something else "
        "than JSON (`Content-Type`).",
        422: "A record breaks the spec; `detail` names the record and the field.",
    }
    return {str(status): _json(_ERROR, text[status]) for status in statuses}


def feature_schema(feature: FeatureSpec, flag: bool) -> dict[str, Any]:
    """One input column as JSON Schema (OpenAPI 3.0 dialect)."""
    schema: dict[str, Any]
    if feature.type == "numeric":
        schema = {"type": "number"}
        if feature.min is not None:
            schema["minimum"] = feature.min
        if feature.max is not None:
            schema["maximum"] = feature.max
        if flag:  # out-of-range values are accepted (and flagged)
            schema = {"type": "number"}
    else:
        limit = feature.max_length if feature.max_length is not None else DEFAULT_MAX_LENGTH
        schema = {"type": "string", "maxLength": limit}
        if feature.categories is not None and not flag:
            schema = {"type": "string", "enum": [c for c in feature.categories if len(c) <= limit]}
    if feature.nullable:
        schema["nullable"] = True
    return schema


def request_schema(spec: ModelSpec, max_batch_size: int) -> dict[str, Any]:
    """`{"records": [...]}` for one model."""
    flag = spec.on_out_of_range == "flag"
    properties = {f.name: feature_schema(f, flag) for f in spec.features}
    for feature in spec.features:
        if not feature.model_input:  # optional: null means left out (`requests.py`)
            schema = properties[feature.name]
            schema["nullable"] = True
            if "enum" in schema and None not in schema["enum"]:
                schema["enum"] = [*schema["enum"], None]  # OpenAPI 3.0.3: null must be listed
    if spec.id_column is not None:
        properties[spec.id_column] = {
            "oneOf": [
                {"type": "string", "maxLength": DEFAULT_MAX_LENGTH},
                {"type": "integer", "minimum": MIN_ID, "maximum": MAX_ID},
            ],
            "nullable": True,
        }
    record = {
        "type": "object",
        "properties": properties,
        "required": spec.input_columns,
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "records": {
                "type": "array",
                "items": record,
                "minItems": 1,
                "maxItems": max_batch_size,
            }
        },
        "required": ["records"],
        "additionalProperties": False,
    }


def _components(specs: dict[str, ModelSpec], max_batch_size: int) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["error", "detail"],
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "prediction": {"type": "number"},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "prediction_id": {"type": "string"},
                "record_id": {"type": "string", "nullable": True},
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "variant": {"type": "string", "enum": ["champion", "canary"]},
                "flags": {"type": "array", "items": {"type": "string"}},
            },
            "required": [
                "prediction",
                "prediction_id",
                "record_id",
                "model_name",
                "model_version",
                "variant",
            ],
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Prediction"},
                }
            },
            "required": ["predictions"],
        },
        "Metadata": {
            "type": "object",
            "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}},
            "required": ["model_name", "model_version"],
        },
    }
    for name, spec in specs.items():
        schemas[f"{name}_request"] = request_schema(spec, max_batch_size)
    return {
        "schemas": schemas,
        "securitySchemes": {
            "admin": {"type": "http", "scheme": "bearer"},
            # With X-MLflow-Timestamp and X-MLflow-Delivery-Id, as MLflow signs deliveries.
            "webhook": {"type": "apiKey", "in": "header", "name": "X-MLflow-Signature"},
        },
    }


def _predict(request: dict[str, Any], extra_errors: tuple[int, ...] = ()) -> dict[str, Any]:
    return {
        "post": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": _json({"$ref": "#/components/schemas/PredictResponse"}, "One row a record"),
                **_errors(400, 413, 415, 422, *extra_errors),
            },
        }
    }


def _get(schema: dict[str, Any], description: str, *errors: int) -> dict[str, Any]:
    return {"get": {"responses": {"200": _json(schema, description), **_errors(*errors)}}}


def openapi_document(
    specs: dict[str, ModelSpec], default_model: str, max_batch_size: int
) -> dict[str, Any]:
    """The document for the models served now (`specs`, by name)."""
    names = sorted(specs)
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": names},
    }
    per_model = {"oneOf": [{"$ref": f"#/components/schemas/{n}_request"} for n in names]}
    admin_query = [
        {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
    admin_errors = _errors(400, 401, 403, 404)
    metadata = {"$ref": "#/components/schemas/Metadata"}
    text = {"description": "Plain text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lifecycle-assets prediction service",
            "version": "1",
            "description": f"Default model: {default_model}. Admin endpoints need a bearer token.",
        },
        "paths": {
            "/predict": _predict({"$ref": f"#/components/schemas/{default_model}_request"}),
            "/metadata": _get(metadata, "The default model's metadata", 400),
            "/models": _get({"type": "object"}, "The models served"),
            "/models/{name}/predict": {**_predict(per_model, (404,)), "parameters": [name_param]},
            "/models/{name}/metadata": {
                **_get(metadata, "The model's metadata", 400, 404),
                "parameters": [name_param],
            },
            "/readyz": _get(
                {"type": "object"},
                "Ready (200 once serving); `status` is `degraded` while something the "
                "registry names does not serve: `degraded` (a champion on a fallback), "
                "`lost_roles` (a canary or shadow), `not_served` (a model)",
            ),
            "/livez": {"get": {"responses": {"200": text}}},
            "/metrics": {"get": {"responses": {"200": text}}},
            "/hooks/registry": {
                "post": {
                    "description": "MLflow webhook delivery (signed with LIFECYCLE_WEBHOOK_SECRET)",
                    "security": [{"webhook": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "Polled the registry"),
                        **_errors(400, 401, 403, 413),
                    },
                }
            },
            "/admin/status": {
                "get": {
                    "security": [{"admin": []}],
                    "parameters": admin_query,
                    "responses": {"200": _json({"type": "object"}, "Status"), **admin_errors},
                }
            },
            "/admin/reload": {
                "post": {
                    "security": [{"admin": []}],
                    "parameters": [
                        *admin_query,
                        {
                            "name": "retry",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {"200": _json({"type": "object"}, "Status"), **admin_errors},
                }
            },
        },
        "components": _components(specs, max_batch_size),
    }
