"""Validate a `/predict` body against the model's spec before any model code runs.

Every rule comes from the `ModelSpec` (which columns, their types, which may be null, which are
audit-only), so a new spec needs no serving change. Bad input raises `RequestError`, which the
service turns into a 4xx naming the record and the field: a client mistake must never look like a
server failure, and must never reach the model as a silently coerced value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lifecycle_assets.ml.features import boolean_level
from lifecycle_assets.spec import FeatureSpec, ModelSpec

# Enough to fix a request, small enough that a 1,000-record garbage body gives a short answer.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class FieldError:
    """One problem in one record; `record` is None for problems with the envelope."""

    field: str
    message: str
    record: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "field": self.field, "message": self.message}


@dataclass
class RequestError(ValueError):
    """A client error with its HTTP status (400 body, 413 too large, 422 invalid records)."""

    status: int
    message: str
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "detail": [e.to_dict() for e in self.errors]}


@dataclass(frozen=True)
class ValidatedBatch:
    """Records that passed validation, as the raw-column frame `compute_features` expects."""

    frame: pl.DataFrame
    # The client's own id per record (None where absent); answered and logged as `record_id`.
    ids: list[str | None]
    # Every spec column present in the request, as sent, for the prediction log.
    records: list[dict[str, Any]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {str: "string", bool: "boolean", dict: "object", list: "array"}.get(
        type(value), type(value).__name__
    )


def _check_value(feature: FeatureSpec, value: Any) -> str | None:
    """The problem with one value, or None when it is acceptable."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        return None if feature.nullable else "must not be null or NaN"
    if feature.type == "numeric":
        if not _is_number(value):
            return f"expected a number, got {_type_name(value)}"
        if isinstance(value, float) and math.isinf(value):
            return "must be a finite number"
        return None
    if not isinstance(value, str | bool):
        # Unknown levels are fine (they map to __unknown__ in the features); other types are not.
        return f"expected a string, got {_type_name(value)}"
    return None


class RequestValidator:
    """Checks records against one spec; built once per loaded model, used for every request."""

    def __init__(self, spec: ModelSpec, max_batch_size: int) -> None:
        self.spec = spec
        self.max_batch_size = max_batch_size
        self.features = {f.name: f for f in spec.features}
        self.required = frozenset(spec.input_columns)
        self.allowed = frozenset(self.features) | {spec.id_column} - {None}
        # Audit-only columns (the sensitive attribute) are optional: validated and logged if sent.
        self.columns = [f.name for f in spec.features]

    def parse(self, body: bytes) -> ValidatedBatch:
        """Decode a JSON body `{"records": [...]}` and validate it."""
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"malformed JSON: {error}") from error
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise RequestError(400, 'the body must be a JSON object {"records": [...]}')
        unknown = sorted(set(payload) - {"records"})
        if unknown:
            raise RequestError(
                400, f"unknown top-level fields {unknown}; only 'records' is allowed"
            )
        return self.validate(payload["records"])

    def validate(self, records: list[Any]) -> ValidatedBatch:
        """Validate decoded records; raises RequestError listing the first problems found."""
        if not records:
            raise RequestError(422, "records must hold at least one record")
        if len(records) > self.max_batch_size:
            raise RequestError(
                413, f"{len(records)} records exceed the batch limit of {self.max_batch_size}"
            )
        errors: list[FieldError] = []
        for index, record in enumerate(records):
            errors.extend(self._record_errors(index, record))
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        if errors:
            errors = errors[:MAX_REPORTED_ERRORS]
            first = errors[0]
            raise RequestError(
                422, f"records[{first.record}].{first.field}: {first.message}", errors
            )
        return self._batch(records)

    def _record_errors(self, index: int, record: Any) -> list[FieldError]:
        if not isinstance(record, dict):
            return [FieldError("<record>", f"expected an object, got {_type_name(record)}", index)]
        errors = [
            FieldError(name, "unknown field", index) for name in sorted(set(record) - self.allowed)
        ]
        errors += [
            FieldError(name, "missing required field", index)
            for name in sorted(self.required - set(record))
        ]
        for name, value in record.items():
            feature = self.features.get(name)
            if feature is not None and (problem := _check_value(feature, value)) is not None:
                errors.append(FieldError(name, problem, index))
        id_column = self.spec.id_column
        identifier = record.get(id_column) if id_column else None
        if isinstance(identifier, bool) or not isinstance(identifier, str | int | None):
            errors.append(FieldError(id_column, "expected a string or an integer", index))
        return errors

    def _batch(self, records: list[dict[str, Any]]) -> ValidatedBatch:
        columns: dict[str, pl.Series] = {}
        for name in self.columns:
            feature = self.features[name]
            values = [record.get(name) for record in records]
            if feature.type == "numeric":
                # NaN is null here, as in `compute_features`; ints become floats exactly as the
                # pipeline's cast does.
                floats = [None if v is None or v != v else float(v) for v in values]
                columns[name] = pl.Series(name, floats, dtype=pl.Float64)
            else:
                # JSON true/false are levels of a boolean column, spelled as the spec spells them.
                text = [boolean_level(v, feature) if isinstance(v, bool) else v for v in values]
                columns[name] = pl.Series(name, text, dtype=pl.String)
        id_column = self.spec.id_column
        ids = [
            None if id_column is None or record.get(id_column) is None else str(record[id_column])
            for record in records
        ]
        return ValidatedBatch(frame=pl.DataFrame(columns), ids=ids, records=records)
