"""Request validation: every client mistake is a RequestError naming the record and the field."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.requests import RequestError, RequestValidator
from lifecycle_assets.spec import ModelSpec


def good_record() -> dict[str, Any]:
    return {
        "application_id": "app-1",
        "age": 41,
        "income": 52000.0,
        "loan_amount": 12000,
        "loan_term_months": 36,
        "credit_score": 690,
        "debt_to_income": 0.31,
        "num_open_accounts": 4,
        "num_delinquencies": 0,
        "employment_years": 6.5,
        "home_ownership": "rent",
        "loan_purpose": "car",
        "region": "north",
        "gender": "female",
    }


@pytest.fixture
def validator(spec: ModelSpec) -> RequestValidator:
    return RequestValidator(spec, max_batch_size=5)


def body(*records: Any) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def rejected(validator: RequestValidator, raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        validator.parse(raw)
    return caught.value


def test_good_batch_becomes_typed_frame_in_spec_order(
    validator: RequestValidator, spec: ModelSpec
) -> None:
    second = {**good_record(), "application_id": 7, "income": None, "region": "west"}
    del second["gender"]
    batch = validator.parse(body(good_record(), second))
    assert batch.frame.columns == [f.name for f in spec.features]
    assert batch.frame.schema["age"] == pl.Float64
    assert batch.frame.schema["region"] == pl.String
    assert batch.frame["income"].to_list() == [52000.0, None]
    assert batch.frame["gender"].to_list() == ["female", None]
    assert batch.ids == ["app-1", "7"]


def test_id_column_is_optional(validator: RequestValidator) -> None:
    record = good_record()
    del record["application_id"]
    assert validator.parse(body(record)).ids == [None]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"age": "41"}, "age", "expected a number, got string"),
        ({"age": True}, "age", "expected a number, got boolean"),
        ({"age": None}, "age", "must not be null"),
        ({"loan_amount": float("nan")}, "loan_amount", "must not be null or NaN"),
        ({"debt_to_income": float("inf")}, "debt_to_income", "finite"),
        ({"region": 3}, "region", "expected a string, got int"),
        ({"home_ownership": None}, "home_ownership", "must not be null"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown field"),
        ({"application_id": [1]}, "application_id", "string or an integer"),
    ],
)
def test_bad_values_name_the_field(
    validator: RequestValidator, change: dict[str, Any], field: str, fragment: str
) -> None:
    error = rejected(validator, body(good_record(), {**good_record(), **change}))
    assert error.status == 422
    assert error.errors[0].record == 1
    assert error.errors[0].field == field
    assert fragment in error.errors[0].message
    assert field in str(error)


def test_nan_literal_in_json_is_rejected_for_non_nullable(validator: RequestValidator) -> None:
    raw = body(good_record()).replace(b'"age": 41', b'"age": NaN')
    assert rejected(validator, raw).errors[0].field == "age"


def test_nullable_numeric_accepts_null_and_nan(validator: RequestValidator) -> None:
    batch = validator.parse(body({**good_record(), "income": float("nan"), "credit_score": None}))
    assert batch.frame["income"].to_list() == [None]
    assert batch.frame["credit_score"].to_list() == [None]


def test_an_optional_field_sent_as_null_counts_as_left_out(
    validator: RequestValidator, spec: ModelSpec
) -> None:
    """`gender` (audit-only, `nullable: false` for training batches) may be left out of a
    request, so a null or NaN there means the same; a required field's null stays a 422."""
    assert not spec.feature("gender").nullable and not spec.feature("gender").model_input
    left_out = {k: v for k, v in good_record().items() if k != "gender"}
    for sent in (None, float("nan")):
        batch = validator.parse(body({**good_record(), "gender": sent}))
        assert batch.frame.to_dicts() == validator.parse(body(left_out)).frame.to_dicts()
        assert batch.records[0]["gender"] is None  # logged as null, never as NaN
    error = rejected(validator, body({**good_record(), "gender": "unknown"}))
    assert (error.status, error.errors[0].field) == (422, "gender")
    error = rejected(validator, body({**good_record(), "loan_amount": None, "gender": None}))
    assert [(e.field, e.message) for e in error.errors] == [
        ("loan_amount", "must not be null or NaN")
    ]
    assert str(error) == "records[0].loan_amount: must not be null or NaN"


def test_a_record_of_many_made_up_fields_is_reported_without_listing_them_all(
    validator: RequestValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4 MB body of one record with 300,000 made-up fields (or fields given twice) held the
    event loop for about a second while every one became an error object; only the reported
    twenty are made now, and they are the same twenty."""
    from lifecycle_assets.serving import requests

    made: list[str] = []

    class Counted(requests.FieldError):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self.field)

    monkeypatch.setattr(requests, "FieldError", Counted)
    fields = {f"x{i:06d}": 0 for i in range(50_000)}
    error = rejected(validator, body({**good_record(), **fields, "age": "old"}))
    expected = [f"x{i:06d}" for i in range(requests.MAX_REPORTED_ERRORS)]
    assert [e.field for e in error.errors] == expected
    assert len(made) == requests.MAX_REPORTED_ERRORS
    made.clear()
    twice = b", ".join(b'"y%06d": 1, "y%06d": 2' % (i, i) for i in range(50_000))
    raw = body(good_record())[:-3] + b", " + twice + b"}]}"
    error = rejected(validator, raw)
    assert [e.field for e in error.errors][:2] == ["y000000", "y000001"]
    assert len(made) <= 2 * requests.MAX_REPORTED_ERRORS


def test_missing_field(validator: RequestValidator) -> None:
    record = good_record()
    del record["credit_score"]
    error = rejected(validator, body(record))
    assert (error.status, error.errors[0].field) == (422, "credit_score")
    assert "missing" in error.errors[0].message


def test_every_problem_is_listed(validator: RequestValidator) -> None:
    error = rejected(validator, body({**good_record(), "age": "x", "region": 1, "extra": 0}))
    assert {e.field for e in error.errors} == {"age", "region", "extra"}


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[]", 400, "records"),
        (b'{"records": {}}', 400, "records"),
        (b'{"records": [], "extra": 1}', 400, "extra"),
        (b'{"records": []}', 422, "at least one"),
        (b'{"records": [1]}', 422, "expected an object"),
    ],
)
def test_bad_envelopes(validator: RequestValidator, raw: bytes, status: int, fragment: str) -> None:
    error = rejected(validator, raw)
    assert error.status == status
    assert fragment in json.dumps(error.to_dict())


def test_batch_over_the_limit_is_413(validator: RequestValidator) -> None:
    error = rejected(validator, body(*[good_record()] * 6))
    assert error.status == 413
    assert "5" in str(error)


def test_validation_follows_the_spec_not_fixed_columns(spec: ModelSpec) -> None:
    features = [
        f.model_copy(update={"nullable": True}) if f.name == "age" else f for f in spec.features
    ]
    relaxed = RequestValidator(spec.model_copy(update={"features": tuple(features)}), 5)
    assert relaxed.parse(body({**good_record(), "age": None})).frame["age"].to_list() == [None]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"age": -5}, "age", "below the minimum 18"),
        ({"credit_score": 5000}, "credit_score", "above the maximum 850"),
        ({"region": "Atlantis"}, "region", "unknown level 'Atlantis'"),
        # Levels are compared exactly as the spec writes them.
        ({"home_ownership": "Rent"}, "home_ownership", "unknown level 'Rent'"),
    ],
)
def test_out_of_range_and_unknown_levels_follow_the_training_rules(
    validator: RequestValidator, spec: ModelSpec, change: dict[str, Any], field: str, fragment: str
) -> None:
    error = rejected(validator, body(good_record(), {**good_record(), **change}))
    assert (error.status, error.errors[0].record, error.errors[0].field) == (422, 1, field)
    assert fragment in error.errors[0].message

    flagging = RequestValidator(spec.model_copy(update={"on_out_of_range": "flag"}), 5)
    batch = flagging.parse(body(good_record(), {**good_record(), **change}))
    assert batch.flags[0] == []
    assert len(batch.flags[1]) == 1 and batch.flags[1][0].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("raw", "status", "field", "fragment"),
    [
        (b'{"age": ' + b"9" * 400 + b"}", 422, "age", "too large"),
        (b'{"age": ' + b"9" * 5000 + b"}", 422, "age", "too large"),
        (b'{"application_id": ' + b"9" * 5000 + b"}", 422, "application_id", "integer"),
        (b'{"region": "\\ud800"}', 422, "region", "surrogate"),
        (b'{"application_id": "\\ud800"}', 422, "application_id", "valid text"),
        (b'{"region": "' + b"x" * 20_000 + b'"}', 422, "region", "max_length 256"),
        (b'{"\\ud800": 1}', 422, "\\ud800", "unknown field"),
    ],
)
def test_hostile_values_are_client_errors(
    validator: RequestValidator, raw: bytes, status: int, field: str, fragment: str
) -> None:
    name = json.loads(raw[1 : raw.index(b'":') + 1])  # the field `raw` sets, in place of ours
    record = json.dumps({k: v for k, v in good_record().items() if k != name}).encode()
    patched = record[:-1] + b", " + raw[1:]
    error = rejected(validator, b'{"records": [' + patched + b"]}")
    assert error.status == status
    found = [e for e in error.errors if e.to_dict()["field"] == field]
    assert found and fragment in found[0].message, error.to_dict()
    json.dumps(error.to_dict()).encode("utf-8")  # the answer itself is valid UTF-8


def test_deep_nesting_is_a_400(validator: RequestValidator) -> None:
    error = rejected(validator, b"[" * 100_000 + b"]" * 100_000)
    assert (error.status, str(error)) == (400, "malformed JSON: nested too deeply")


def test_max_length_comes_from_the_spec(spec: ModelSpec) -> None:
    features = [
        f.model_copy(update={"max_length": 3}) if f.name == "gender" else f for f in spec.features
    ]
    short = RequestValidator(spec.model_copy(update={"features": tuple(features)}), 5)
    error = rejected(short, body({**good_record(), "gender": "female"}))
    assert error.errors[0].field == "gender" and "max_length 3" in error.errors[0].message


def test_nan_is_logged_as_null(validator: RequestValidator) -> None:
    batch = validator.parse(body(good_record()).replace(b'"income": 52000.0', b'"income": NaN'))
    assert batch.records[0]["income"] is None


def test_flagged_values_are_scored_and_flagged_in_the_answer(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """`on_out_of_range: flag`: the record is answered, and its row says what was let through."""
    import asyncio
    import dataclasses
    import os

    from lifecycle_assets.serving.model_source import load_served_model
    from lifecycle_assets.serving.predictor import Predictor

    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_SOURCE": "registry"})
    flagging = served.loaded.spec.model_copy(update={"on_out_of_range": "flag"})
    served = dataclasses.replace(served, loaded=dataclasses.replace(served.loaded, spec=flagging))
    predictor = Predictor(served, lifecycle_env)
    odd = {**good_record(), "application_id": "odd", "age": 5, "region": "Atlantis"}
    batch = predictor.validator.parse(body(good_record(), odd))

    async def answer() -> list[dict[str, Any]]:
        return await predictor.predict(batch)

    rows = asyncio.run(answer())
    assert "flags" not in rows[0]
    assert rows[1]["record_id"] == "odd" and 0.0 <= rows[1]["probability"] <= 1.0
    assert rows[1]["flags"] == [
        "age: 5 is below the minimum 18",
        "region: unknown level 'Atlantis'; expected one of ['north', 'south', 'east', 'west']",
    ]


def test_a_field_given_twice_is_refused_not_silently_the_last(
    validator: RequestValidator,
) -> None:
    """JSON leaves a repeated name to the parser (Python keeps the last value, other readers
    the first): a record saying `"age": 41, "age": 90` is refused, naming the record and field,
    so what is scored and logged is never a guess."""
    record = json.dumps(good_record())
    twice = record[:-1] + ', "age": 90, "region": "south", "region": "east"}'
    error = rejected(validator, b'{"records": [' + f"{record}, {twice}".encode() + b"]}")
    assert error.status == 422
    assert [(e.record, e.field, e.message) for e in error.errors] == [
        (1, "age", "given more than once"),
        (1, "region", "given more than once"),
    ]
    assert str(error) == "records[1].age: given more than once"
    # In the envelope, and inside a value (then only its type matters).
    error = rejected(validator, b'{"records": [], "records": [' + record.encode() + b"]}")
    assert (error.status, str(error)) == (400, "'records' is given more than once")
    nested = json.dumps({**good_record(), "loan_purpose": "@"}).replace('"@"', '{"a": 1, "a": 2}')
    error = rejected(validator, b'{"records": [' + nested.encode() + b"]}")
    assert error.errors[0].message == "expected a string, got object"


def test_a_record_that_is_not_an_object_names_its_json_type(validator: RequestValidator) -> None:
    error = rejected(validator, b'{"records": [null, 1.5, "x"]}')
    assert [e.message for e in error.errors] == [
        "expected an object, got null",
        "expected an object, got float",
        "expected an object, got string",
    ]


def test_a_score_that_is_no_finite_number_is_a_422_neither_logged_nor_counted(
    lifecycle_env: Settings,
) -> None:
    """Valid but extreme inputs can drive a linear model's output to ±inf or NaN (here a
    loan/income ratio over the float range): that answer cannot be written as JSON. The request
    is a 422 naming the record, not a 500, and nothing of it is logged or counted as answered;
    a request scored in the same batch is answered as usual."""
    import asyncio
    import datetime as dt
    import math
    import os

    import prometheus_client

    from lifecycle_assets.data.simulator import simulate_range
    from lifecycle_assets.ml.features import feature_table
    from lifecycle_assets.serving.model_source import load_served_model
    from lifecycle_assets.serving.predictor import Predictor
    from lifecycle_assets.spec import BUILTIN_SPECS_DIR, load_spec
    from lifecycle_assets_tests.conftest import register_champion
    from lifecycle_assets_tests.log_rows import logged_lines

    loss = load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")
    ridge = loss.model_copy(
        update={"estimator": loss.estimator.model_copy(update={"kind": "ridge", "params": {}})}
    )
    batches = simulate_range(dt.date(2026, 1, 1), 4, seed=42)
    register_champion(
        lifecycle_env, ridge, pl.concat([feature_table(frame, ridge) for _, frame in batches])
    )
    served = load_served_model({**os.environ, "LIFECYCLE_MODEL_NAMES": ridge.name})
    predictor = Predictor(served, lifecycle_env)
    good = {k: v for k, v in good_record().items() if k in predictor.validator.allowed}
    extreme = {**good, "application_id": "extreme", "loan_amount": 1e308, "income": 1e-300}

    def answered() -> float:
        labels = {"model_name": ridge.name, "model_version": served.ref.version}
        found = prometheus_client.REGISTRY.get_sample_value("lifecycle_predictions_total", labels)
        return found or 0.0

    before = answered()

    async def together() -> list[Any]:
        # The first is scored at once, the next two as one coalesced batch.
        return await asyncio.gather(
            predictor.predict(predictor.validator.parse(body(good))),
            predictor.predict(predictor.validator.parse(body(good, extreme))),
            predictor.predict(predictor.validator.parse(body(good))),
            return_exceptions=True,
        )

    first, refused, last = asyncio.run(together())
    assert isinstance(refused, RequestError) and refused.status == 422, refused
    assert str(refused).startswith("records[1]: the model's output is not a finite number")
    assert [e.record for e in refused.errors] == [1]
    fine = first + last
    assert len(fine) == 2 and all(math.isfinite(row["prediction"]) for row in fine)
    assert answered() - before == 2
    logged = logged_lines(lifecycle_env.prediction_log_dir, ridge.name)
    assert sorted(row["prediction_id"] for row in logged) == sorted(
        row["prediction_id"] for row in fine
    )
