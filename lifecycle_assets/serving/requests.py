"""Validate a `/predict` body against the model's spec before any model code runs.

Every rule comes from the `ModelSpec`, the same rules a training batch is checked against
(which columns, their types, which may be null, `min`/`max`, the categorical levels compared
exactly as written, `max_length`), so a new spec needs no serving change. Bad input raises
`RequestError`, which the service turns into a 4xx naming the record and the field: a client
mistake must never look like a server failure, and must never reach the model as a silently
coerced value. A value out of range or an unknown level is refused (422), unless the spec says
`on_out_of_range: flag`: then it is scored and the answer and its log row carry `flags`.

Hostile input is a 4xx too: integers too long to be numbers, lone UTF-16 surrogates (which cannot
be written as UTF-8, in the answer or the log), JSON nested past the parser's depth, strings
longer than `max_length` (default `DEFAULT_MAX_LENGTH`), and a field named twice in one object
(JSON leaves which value counts to each reader).
"""

from __future__ import annotations

import functools
import heapq
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifecycle_assets.spec import FeatureSpec, ModelSpec

if TYPE_CHECKING:
    import polars as pl

# polars (and `ml.features`, which needs it) are imported where a frame is built or a JSON
# boolean is read as a level, not at import: the `bentoml serve` supervisor imports this module
# through the service and builds no frame (0.4 s of its start-up).

# Enough to fix a request, small enough that a 1,000-record garbage body gives a short answer.
MAX_REPORTED_ERRORS = 20
# Longest string accepted for a categorical value (when the spec sets no `max_length`) or an id.
DEFAULT_MAX_LENGTH = 256
# An integer literal longer than this is no number a model can use (float() overflows at 309).
MAX_INT_DIGITS = 300
# Integer record ids are 64-bit: what every database and log reader can hold.
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
# How much of a client's field name an error message repeats.
MAX_NAME_IN_MESSAGE = 64


class _HugeInt(str):
    """An integer literal too long to convert; rejected by field during validation."""


def _parse_int(text: str) -> int | _HugeInt:
    return _HugeInt(text) if len(text) > MAX_INT_DIGITS else int(text)


class _Repeated(dict):
    """A JSON object that named a field more than once, holding the last values; which value
    a reader keeps is its own choice (Python the last, others the first), so it is refused."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each decoded object: a dict, or a `_Repeated` naming the fields given twice."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    repeated = _Repeated(found)
    repeated.repeated = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return repeated


# `json.loads(body, parse_int=...)` builds a decoder on every call: built once here, fed as
# `json.loads` feeds it (the body's encoding detected, lone surrogates passed through).
_decode = json.JSONDecoder(parse_int=_parse_int, object_pairs_hook=_object).decode


def shown(name: Any) -> str:
    """A client's field (or model) name as it may appear in an answer: valid UTF-8, bounded
    length."""
    text = str(name).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_NAME_IN_MESSAGE else text[:MAX_NAME_IN_MESSAGE] + "..."


def _is_text(value: str) -> bool:
    """False for strings holding lone surrogates (valid in JSON, not writable as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class FieldError:
    """One problem in one record; `record` is None for problems with the envelope."""

    field: str
    message: str
    record: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "field": shown(self.field), "message": self.message}


def error_body(message: str) -> dict[str, Any]:
    """Every error the service answers has this shape: `error` says what, `detail` lists the
    records' field errors (empty when the error is not about a field)."""
    return {"error": message, "detail": []}


@dataclass
class RequestError(ValueError):
    """A refused request with its HTTP status (400 body, 413 too large, 422 invalid records;
    503 checked against the fields of a champion swapped out before it was scored)."""

    status: int
    message: str
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "detail": [e.to_dict() for e in self.errors]}


@dataclass(frozen=True)
class ValidatedBatch:
    """Records that passed validation; `frame` builds the raw-column frame `compute_features`
    expects only when something asks for it (scikit-learn, the shadow, a check): a compiled
    model scores `records` straight through the row path, and building a polars frame for one
    record cost about 0.6 ms, most of a request's time."""

    # The client's own id per record (None where absent); answered and logged as `record_id`.
    ids: list[str | None]
    # Every spec column present in the request, as sent (a NaN as None), for the log and scoring.
    records: list[dict[str, Any]]
    # Per record, what `on_out_of_range: flag` let through ("field: problem"); empty lists
    # when nothing was flagged.
    flags: list[list[str]] = field(default_factory=list)
    # The spec's features, in order: the frame's columns and their types.
    features: tuple[FeatureSpec, ...] = ()

    @functools.cached_property
    def frame(self) -> pl.DataFrame:
        """The records as raw columns: numbers as Float64 (ints become floats exactly as the
        pipeline's cast does), levels as String (JSON true/false spelled as the spec spells
        them), missing values as null."""
        import polars as pl

        from lifecycle_assets.ml.features import boolean_level

        columns: dict[str, pl.Series] = {}
        for feature in self.features:
            name = feature.name
            values = [record.get(name) for record in self.records]
            if feature.type == "numeric":
                floats = [None if v is None else float(v) for v in values]
                columns[name] = pl.Series(name, floats, dtype=pl.Float64)
            else:
                text = [boolean_level(v, feature) if isinstance(v, bool) else v for v in values]
                columns[name] = pl.Series(name, text, dtype=pl.String)
        return pl.DataFrame(columns)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    return {str: "string", bool: "boolean", list: "array", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_value(feature: FeatureSpec, value: Any, max_length: int) -> tuple[str | None, bool]:
    """The problem with one value (None when acceptable), and whether it is a range problem
    (out of `min`/`max`, an unknown level) that `on_out_of_range: flag` may let through."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        return (None if feature.nullable else "must not be null or NaN"), False
    if isinstance(value, _HugeInt):
        return f"integer of {len(value)} digits is too large", False
    if feature.type == "numeric":
        if not _is_number(value):
            return f"expected a number, got {_type_name(value)}", False
        if isinstance(value, float) and math.isinf(value):
            return "must be a finite number", False
        if feature.min is not None and value < feature.min:
            return f"{value} is below the minimum {feature.min:g}", True
        if feature.max is not None and value > feature.max:
            return f"{value} is above the maximum {feature.max:g}", True
        return None, False
    if isinstance(value, bool):
        from lifecycle_assets.ml.features import boolean_level

        value = boolean_level(value, feature)  # JSON true/false: a level of a boolean column
    if not isinstance(value, str):
        return f"expected a string, got {_type_name(value)}", False
    if len(value) > max_length:
        return f"string of {len(value)} characters exceeds max_length {max_length}", False
    if not _is_text(value):
        return "not valid Unicode (lone surrogate)", False
    if feature.categories is not None and value not in feature.categories:
        # Compared exactly as written in the spec: "Rent" is not "rent".
        return f"unknown level {value!r}; expected one of {list(feature.categories)}", True
    return None, False


def _plain_check(feature: FeatureSpec, max_length: int) -> Callable[[Any], bool]:
    """A quick test that a value is plainly valid (a finite number within bounds, a known level
    within `max_length`); False sends the value through `_check_value`, which decides and words
    the problem, so the rules stay the ones written there. About 4x cheaper for the common case.
    """
    if feature.type == "numeric":
        low = -math.inf if feature.min is None else feature.min
        high = math.inf if feature.max is None else feature.max

        def number(value: Any) -> bool:
            kind = type(value)
            # NaN fails every comparison; infinities are refused whatever the bounds.
            return (kind is float or kind is int) and low <= value <= high and -_INF < value < _INF

        return number
    levels = frozenset(feature.categories or ())

    def level(value: Any) -> bool:
        return type(value) is str and value in levels and len(value) <= max_length

    return level


_INF = math.inf


class RequestValidator:
    """Checks records against one spec; built once per loaded model, used for every request."""

    def __init__(
        self, spec: ModelSpec, max_batch_size: int, on_out_of_range: str | None = None
    ) -> None:
        self.spec = spec
        self.max_batch_size = max_batch_size
        # `flag` scores out-of-range values and unknown levels and flags them; `reject` refuses.
        self.flag_out_of_range = (on_out_of_range or spec.on_out_of_range) == "flag"
        self.max_lengths = {
            f.name: f.max_length if f.max_length is not None else DEFAULT_MAX_LENGTH
            for f in spec.features
        }
        self.features = {f.name: f for f in spec.features}
        self.plain = {f.name: _plain_check(f, self.max_lengths[f.name]) for f in spec.features}
        self.required = frozenset(spec.input_columns)
        # Audit-only columns (the sensitive attribute) are optional: validated and logged if
        # sent; sent as null (or NaN) they count as left out, whatever their `nullable` says
        # (which is about training batches, where the column is always present).
        self.optional = frozenset(self.features) - self.required
        self.allowed = frozenset(self.features) | {spec.id_column} - {None}
        self.feature_order = tuple(spec.features)

    def parse(self, body: bytes) -> ValidatedBatch:
        """Decode a JSON body `{"records": [...]}` and validate it."""
        try:
            payload = _decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        except RecursionError as error:
            raise RequestError(400, "malformed JSON: nested too deeply") from error
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestError(400, f"malformed JSON: {error}") from error
        if type(payload) is _Repeated:
            raise RequestError(400, f"{shown(payload.repeated[0])!r} is given more than once")
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise RequestError(400, 'the body must be a JSON object {"records": [...]}')
        unknown = sorted(shown(key) for key in set(payload) - {"records"})
        if unknown:
            raise RequestError(
                400, f"unknown top-level fields {unknown[:5]}; only 'records' is allowed"
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
        flags: list[list[str]] = []
        # Records whose every value passed the quick check hold no NaN to clean in `_batch`.
        plain: list[bool] = []
        for index, record in enumerate(records):
            problems, flagged, all_plain = self._record_errors(index, record)
            errors.extend(problems)
            flags.append(flagged)
            plain.append(all_plain)
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        if errors:
            errors = errors[:MAX_REPORTED_ERRORS]
            first = errors[0]
            raise RequestError(
                422, f"records[{first.record}].{shown(first.field)}: {first.message}", errors
            )
        return self._batch(records, flags, plain)

    def _record_errors(self, index: int, record: Any) -> tuple[list[FieldError], list[str], bool]:
        """The record's errors, the range problems its spec lets through as flags, and whether
        every feature value passed the quick check."""
        if not isinstance(record, dict):
            got = _type_name(record)
            return [FieldError("<record>", f"expected an object, got {got}", index)], [], False
        keys = record.keys()
        errors: list[FieldError] = []
        if type(record) is _Repeated:
            repeated = record.repeated[:MAX_REPORTED_ERRORS]
            errors += [FieldError(name, "given more than once", index) for name in repeated]
        if not keys <= self.allowed:
            # Only the names reported: a 4 MB record of 300,000 made-up fields took a second
            # of the event loop to list them all.
            unknown = heapq.nsmallest(MAX_REPORTED_ERRORS, keys - self.allowed)
            errors += [FieldError(name, "unknown field", index) for name in unknown]
        if not keys >= self.required:
            errors += [
                FieldError(name, "missing required field", index)
                for name in sorted(self.required - keys)
            ]
        if len(errors) >= MAX_REPORTED_ERRORS:  # value problems would not be reported
            return errors, [], False
        flags: list[str] = []
        plain = self.plain
        all_plain = True
        for name, value in record.items():
            check = plain.get(name)
            if check is None or check(value):
                continue
            all_plain = False
            if name in self.optional and (value is None or value != value):
                continue  # null or NaN: missing, which an optional field may be
            feature = self.features[name]
            problem, out_of_range = _check_value(feature, value, self.max_lengths[name])
            if problem is None:
                continue
            if out_of_range and self.flag_out_of_range:
                flags.append(f"{name}: {problem}")
            else:
                errors.append(FieldError(name, problem, index))
        id_column = self.spec.id_column
        identifier = record.get(id_column) if id_column else None
        if isinstance(identifier, bool | _HugeInt) or not isinstance(identifier, str | int | None):
            errors.append(FieldError(id_column, "expected a string or an integer", index))
        elif isinstance(identifier, int) and not MIN_ID <= identifier <= MAX_ID:
            errors.append(FieldError(id_column, "integer ids must fit in 64 bits", index))
        elif isinstance(identifier, str) and (
            len(identifier) > DEFAULT_MAX_LENGTH or not _is_text(identifier)
        ):
            errors.append(
                FieldError(id_column, f"must be valid text of at most {DEFAULT_MAX_LENGTH}", index)
            )
        return errors, flags, all_plain

    def _batch(
        self, records: list[dict[str, Any]], flags: list[list[str]], plain: list[bool]
    ) -> ValidatedBatch:
        id_column = self.spec.id_column
        ids = [
            None if id_column is None or record.get(id_column) is None else str(record[id_column])
            for record in records
        ]
        # One rule everywhere: a NaN input is a missing value, scored and logged as null.
        # (A NaN fails the quick check: only records that did not all pass it are looked at.)
        records = [
            {k: None if isinstance(v, float) and v != v else v for k, v in r.items()}
            if not quick and any(isinstance(v, float) and v != v for v in r.values())
            else r
            for r, quick in zip(records, plain, strict=True)
        ]
        return ValidatedBatch(
            ids=ids,
            records=records,
            flags=flags if any(flags) else [],
            features=self.feature_order,
        )
