"""The dataset/model spec: what a data scientist writes to point the platform at their data.

A spec names the source (the built-in simulator, or a CSV/Parquet file or folder at a local path
or any fsspec URL), the target, typed feature columns, the sensitive attribute, the event
timestamp, and the estimator. Everything downstream (schemas, features, training, serving) is
derived from it, so a spec is the single description of one model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lifecycle_assets.config import DriftThresholds, GateThresholds

BUILTIN_SPECS_DIR = Path(__file__).parent / "specs"
DEFAULT_SPEC_PATH = BUILTIN_SPECS_DIR / "credit_default.yaml"
# The default project: a classifier and a regressor on the same simulated stream.
DEFAULT_SPEC_PATHS = (DEFAULT_SPEC_PATH, BUILTIN_SPECS_DIR / "expected_loss.yaml")
ENV_SPECS = "LIFECYCLE_SPECS"
SIMULATOR_SCHEME = "simulator://"
# The event-time column of a snapshot (data without timestamps): the reader adds it, holding the
# spec's `start_date`, so the whole file is one partition of that day.
SNAPSHOT_TIMESTAMP = "__snapshot_time__"

Task = Literal["binary_classification", "regression"]
ESTIMATORS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("hist_gradient_boosting", "logistic_regression", "random_forest"),
    "regression": ("hist_gradient_boosting", "ridge", "random_forest"),
}

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One input column: its type, whether it may be missing, and its valid range or levels."""

    name: str
    type: Literal["numeric", "categorical"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    # Longest allowed text of a categorical value: a pandera `str_length` check on raw batches,
    # and the request limit in the service (which applies its own default when unset).
    max_length: int | None = Field(default=None, ge=1)
    # False for columns kept for slicing and audit only (the sensitive attribute, by default):
    # they are validated and logged but never shown to the model.
    model_input: bool = True


class DerivedFeatureSpec(_Strict):
    """A feature computed from numeric inputs, identically in the pipeline and the service."""

    name: str
    op: Literal["ratio", "log1p", "difference"]
    inputs: tuple[str, ...]

    @model_validator(mode="after")
    def _arity(self) -> DerivedFeatureSpec:
        expected = 1 if self.op == "log1p" else 2
        if len(self.inputs) != expected:
            raise ValueError(f"derived feature {self.name!r}: {self.op} takes {expected} inputs")
        return self


class SourceSpec(_Strict):
    """Where raw rows come from: `simulator://credit_risk`, or a file/folder path or fsspec URL."""

    uri: str
    format: Literal["csv", "parquet"] | None = None
    simulator: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_simulator(self) -> bool:
        return self.uri.startswith(SIMULATOR_SCHEME)


class EstimatorSpec(_Strict):
    """The scikit-learn estimator at the end of the pipeline, by short name, with its params."""

    kind: Literal["hist_gradient_boosting", "logistic_regression", "ridge", "random_forest"] = (
        "hist_gradient_boosting"
    )
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingSpec(_Strict):
    """The training window and its time-based split (by day, oldest first)."""

    window_days: int = Field(default=60, ge=3)
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    random_seed: int = 7


class ScheduleSpec(_Strict):
    """Cron expressions (UTC) of the model's schedules; every schedule starts stopped."""

    ingest_hour: int = Field(default=1, ge=0, le=23)
    monitoring_cron: str = "0 2 * * *"
    label_refresh_cron: str = "0 3 * * *"
    retrain_cron: str = "0 3 * * 1"


def _override(defaults: Any, overrides: dict[str, Any], what: str) -> Any:
    """`defaults` with `overrides` applied; an unknown key is an error naming the valid ones."""
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; valid: {sorted(known)}")
    return dataclasses.replace(defaults, **overrides)


class ModelSpec(_Strict):
    """A whole model: source, columns, task, estimator, training window, gates and schedules."""

    name: str
    description: str = ""
    task: Task = "binary_classification"
    source: SourceSpec
    target: str
    # The target value that means "positive" (1) for a classifier, as written in the data:
    # `Yes`, `yes`, `True`, `1`. Unset: the target must already be 0/1.
    positive_label: str | int | float | bool | None = None
    # The value that means 0; unset: the one other value found. A third value fails validation.
    negative_label: str | int | float | bool | None = None
    # Each row's event time; leave it out for a snapshot without one (one partition, filed
    # under `start_date`, split at random, stratified by the target).
    timestamp: str = SNAPSHOT_TIMESTAMP
    # How text event times are written (strftime, e.g. `%d/%m/%Y %H:%M`); unset: ISO 8601 only.
    # Never inferred: a row that does not fit is quarantined, not misdated (`data.event_time`).
    timestamp_format: str | None = None
    sensitive_attribute: str
    features: tuple[FeatureSpec, ...]
    derived_features: tuple[DerivedFeatureSpec, ...] = ()
    id_column: str | None = None
    # A request value outside `min`/`max` or an unknown level: `reject` answers 422 naming the
    # record and field; `flag` scores it and flags it in the answer and the prediction log.
    on_out_of_range: Literal["reject", "flag"] = "reject"
    start_date: dt.date
    end_date: dt.date | None = None
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    # Overrides of `config.GateThresholds` and `config.DriftThresholds` fields for this model.
    gates: dict[str, float] = Field(default_factory=dict)
    drift: dict[str, float | None] = Field(default_factory=dict)
    schedules: ScheduleSpec = Field(default_factory=ScheduleSpec)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"model name {value!r} must match {_NAME_PATTERN.pattern}")
        return value

    @model_validator(mode="after")
    def _columns_are_consistent(self) -> ModelSpec:
        names = [feature.name for feature in self.features]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"feature columns listed twice: {duplicates}")
        for role, column in (("target", self.target), ("timestamp", self.timestamp)):
            if column in names:
                raise ValueError(f"{role} column {column!r} must not also be a feature")
        if self.sensitive_attribute not in names:
            raise ValueError(
                f"sensitive_attribute {self.sensitive_attribute!r} must be one of the features "
                f"{names}"
            )
        if self.feature(self.sensitive_attribute).type != "categorical":
            raise ValueError("the sensitive attribute must be categorical (it defines slices)")
        numeric = set(self.numeric_columns)
        for derived in self.derived_features:
            unknown = [column for column in derived.inputs if column not in numeric]
            if unknown:
                raise ValueError(
                    f"derived feature {derived.name!r} uses non-numeric or unknown {unknown}"
                )
            if derived.name in names:
                raise ValueError(f"derived feature {derived.name!r} clashes with a column")
        if not self.is_classifier and (self.positive_label is not None):
            raise ValueError("positive_label is for classifiers; a regression target is a number")
        for feature in self.features:
            if feature.max_length is not None and feature.type != "categorical":
                raise ValueError(f"feature {feature.name!r}: max_length is for categorical columns")
        if self.timestamp_format is not None:
            if self.timestamp == SNAPSHOT_TIMESTAMP:
                raise ValueError("timestamp_format needs a timestamp column (a snapshot has none)")
            if "%" not in self.timestamp_format:
                raise ValueError(
                    f"timestamp_format {self.timestamp_format!r} is not a strftime format "
                    "(e.g. '%d/%m/%Y %H:%M')"
                )
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.estimator.kind not in ESTIMATORS[self.task]:
            raise ValueError(
                f"estimator {self.estimator.kind!r} does not fit task {self.task!r}; "
                f"choose one of {list(ESTIMATORS[self.task])}"
            )
        self.gate_thresholds()
        self.drift_thresholds()
        return self

    @property
    def is_snapshot(self) -> bool:
        """Data without a timestamp: one content-addressed partition, a random split."""
        return self.timestamp == SNAPSHOT_TIMESTAMP

    @property
    def is_classifier(self) -> bool:
        return self.task == "binary_classification"

    @property
    def label_levels(self) -> tuple[str, str | None] | None:
        """(positive, negative or None) as text, when the target is mapped from labels."""
        if self.positive_label is None:
            return None
        negative = None if self.negative_label is None else label_text(self.negative_label)
        return label_text(self.positive_label), negative

    def gate_thresholds(self) -> GateThresholds:
        """The project defaults with this spec's `gates` overrides."""
        return _override(GateThresholds(), self.gates, "gate thresholds")

    def drift_thresholds(self) -> DriftThresholds:
        """The project defaults with this spec's `drift` overrides."""
        return _override(DriftThresholds(), self.drift, "drift thresholds")

    @property
    def input_columns(self) -> list[str]:
        """Raw columns a prediction request must carry."""
        return [f.name for f in self.features if f.model_input]

    @property
    def numeric_columns(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def numeric_features(self) -> list[str]:
        """Numeric model inputs, raw then derived, in the order the model sees them."""
        raw = [f.name for f in self.features if f.type == "numeric" and f.model_input]
        return raw + [d.name for d in self.derived_features]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical" and f.model_input]

    @property
    def feature_names(self) -> list[str]:
        """Columns of the model's input frame, in order."""
        return self.numeric_features + self.categorical_features

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


def label_text(value: Any) -> str:
    """A target label as the data's text holds it: `True`, `Yes`, `1` (a whole float as `1`)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class SpecError(ValueError):
    """A spec a person must fix: the message names the file, the field and what to do."""


def _one_line(error: ValidationError) -> str:
    """Pydantic's errors as `field: message` pairs on one line, without its URLs."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "spec"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file; errors name the file and the offending field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise SpecError(f"spec file not found: {path}") from error
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise SpecError(f"cannot read spec file {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(f"{path}: invalid spec: {_one_line(error)}") from error
    except ValueError as error:
        raise SpecError(f"{path}: invalid spec: {error}") from error
    problems = written_spec_problems(spec)
    if problems:
        raise SpecError(f"{path}: invalid spec: {'; '.join(problems)}")
    return spec


# The longest training window: a window is a list of calendar days (dates end at 9999).
MAX_WINDOW_DAYS = 36_525


def written_spec_problems(spec: ModelSpec) -> list[str]:
    """What a spec file may not say, though `ModelSpec` itself accepts it: settings that
    validate but could only fail later, or silently. Checked where a person writes a spec
    (`load_spec`), never where a registered version's stored copy is read back, so a version
    registered before a check was added still loads and serves."""
    problems = []
    for feature in spec.features:
        where = f"features.{feature.name}"
        if feature.categories is not None and not feature.categories:
            # Validation would accept any level and the features would map every one to
            # `__unknown__`: the model would silently learn nothing from the column.
            problems.append(
                f"{where}.categories is empty: list the levels, or leave it out to accept any"
            )
        if any(bound is not None and bound != bound for bound in (feature.min, feature.max)):
            problems.append(f"{where}: min and max must be numbers, not NaN")
        elif feature.min is not None and feature.max is not None and feature.min > feature.max:
            problems.append(
                f"{where}: min {feature.min:g} is above max {feature.max:g}, so every value "
                "would be out of range"
            )
    if spec.id_column is not None and spec.id_column in {
        *(f.name for f in spec.features),
        spec.target,
        spec.timestamp,
    }:
        problems.append(
            f"id_column {spec.id_column!r} must be a column of its own, not a feature, the "
            "target or the timestamp"
        )
    if spec.training.window_days > MAX_WINDOW_DAYS:
        problems.append(
            f"training.window_days {spec.training.window_days} is over {MAX_WINDOW_DAYS} "
            "(a century of days)"
        )
    for section, values in (("gates", spec.gates), ("drift", spec.drift)):
        # NaN compares false with everything: a NaN floor would pass every `value < floor`.
        nan = sorted(key for key, value in values.items() if value is not None and value != value)
        if nan:
            problems.append(f"{section} {nan} are NaN: give numbers")
    return problems


def default_spec() -> ModelSpec:
    """The built-in credit-default spec on the simulator."""
    return load_spec(DEFAULT_SPEC_PATH)


def configured_specs(environ: dict[str, str] | None = None) -> list[ModelSpec]:
    """The project's models: LIFECYCLE_SPECS (comma-separated spec files), else the built-ins.

    Read by the Dagster code location, the CLI and the service alike, so all three agree on
    which models exist.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_SPECS) or ",".join(str(p) for p in DEFAULT_SPEC_PATHS)
    specs = [load_spec(path.strip()) for path in raw.split(",") if path.strip()]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise SpecError(
            f"{ENV_SPECS} names a model twice: {names}: give each spec file its own `name`"
        )
    return specs
