"""The model card of one evaluated version, as Markdown and as a self-contained HTML page.

A card is built from what the evaluation asset stored (the report, the gate verdicts, the
version's tags) plus the spec and the training-set manifest, so it cannot disagree with the gates
that promoted or refused the version. Sections follow the task: a regressor's card shows errors
and a relative calibration error, a classifier's the confusion counts and a probability ECE.
Both renderings come from one list of sections, so the Markdown and the HTML say the same thing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle_assets import config, storage
from lifecycle_assets.ml.card_markup import (
    Bullets,
    Section,
    Table,
    format_value,
    html_document,
    markdown_document,
    rows_table,
)
from lifecycle_assets.ml.card_sections import (
    calibration_section,
    fairness_section,
    gates_section,
    metrics_section,
    slices_section,
)
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.gates import GateResult
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.spec import ModelSpec

CARD_ARTIFACT_DIR = "model_card"
MARKDOWN_FILE = "model_card.md"
HTML_FILE = "model_card.html"
# Plots the evaluation asset writes, in reading order; any other PNG follows by file name.
PLOT_ORDER = ("roc_curve", "calibration", "confusion_matrix", "slices")


def read_plots(folder: str | Path) -> dict[str, bytes]:
    """The evaluation plots (PNG) in a report folder, known ones first; {} if there is none."""
    folder = storage.path(folder)  # local or object storage
    pngs = {path.stem: path for path in sorted(folder.glob("*.png"))} if folder.is_dir() else {}
    order = [n for n in PLOT_ORDER if n in pngs] + [n for n in pngs if n not in PLOT_ORDER]
    return {name: pngs[name].read_bytes() for name in order}


def _status(gates: Sequence[GateResult]) -> str:
    failed = [g.name for g in gates if not g.passed]
    if failed:
        return (
            f"Status: **REJECTED**: failed {', '.join(failed)}; this version must not be promoted."
        )
    return "Status: **all gates passed**."


@dataclass(frozen=True)
class ModelCard:
    """What one card says about one registered version; render with `to_markdown`/`to_html`."""

    spec: ModelSpec
    model: dict[str, Any]
    report: EvaluationReport
    gates: tuple[GateResult, ...]
    training_set: dict[str, Any]
    registered_at: str | None = None
    plots: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_evaluation(
        cls,
        spec: ModelSpec,
        evaluation: dict[str, Any],
        training_set: dict[str, Any],
        *,
        registered_at: dt.datetime | None = None,
    ) -> ModelCard:
        """A card from the evaluation asset's value; reads the plots in its `report_dir`.

        Raises if the training set is not the one the version was trained on (a card that
        describes other data would be wrong) or if the report is for another task than the spec.
        """
        model = dict(evaluation["model"])
        report = EvaluationReport.from_dict(evaluation["report"])
        trained_on = model.get("tags", {}).get(config.TAG_TRAINING_DIGEST)
        if trained_on and trained_on != training_set["digest"]:
            raise ValueError(
                f"{model['name']} v{model['version']} was trained on {trained_on}, but the "
                f"training set given is {training_set['digest']}: rerun the training job"
            )
        if report.task != spec.task:
            raise ValueError(f"the report is for {report.task}, the spec for {spec.task}")
        report_dir = evaluation.get("report_dir")
        return cls(
            spec=spec,
            model=model,
            report=report,
            gates=tuple(GateResult(**gate) for gate in evaluation["gates"]),
            training_set=training_set,
            registered_at=registered_at.isoformat(timespec="seconds") if registered_at else None,
            plots=read_plots(report_dir) if report_dir else {},
        )

    @property
    def title(self) -> str:
        return f"Model card: {self.model['name']} v{self.model['version']}"

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def _days(self, split: str | None = None) -> str:
        days = self.training_set.get("split_days", {}).get(split) if split else None
        days = days or self.training_set.get("days") or []
        count = f"{len(days)} day" + ("s" if len(days) > 1 else "")
        return f"{days[0]} .. {days[-1]} ({count})" if days else "not recorded"

    def _details(self) -> Section:
        spec, report = self.spec, self.report
        rows: list[tuple[str, Any]] = [
            ("name", self.model["name"]),
            ("version", self.model["version"]),
            ("task", report.task),
            ("target", spec.target),
            ("output", traits(report.task).score_kind),
            ("estimator", spec.estimator.kind),
            ("estimator params", spec.estimator.params or "scikit-learn defaults"),
            ("model inputs", spec.feature_names),
            ("sensitive attribute", f"{spec.sensitive_attribute} (slices only, never an input)"),
        ]
        if report.confusion:
            rows.append(("decision threshold", report.threshold))
        rows += [
            ("registered", self.registered_at or "not recorded"),
            ("model source", self.model.get("source")),
        ]
        return Section("Model details", (Table(("field", "value"), tuple(rows)),))

    def _intended_use(self) -> tuple[Section, Section]:
        spec, target = self.spec, f"`{self.spec.target}`"
        if self.report.task == "regression":
            does = f"It predicts {target} for each record as a point estimate"
            misuse = "Using a prediction as a bound or guarantee: see MAE and RMSE for its error."
        else:
            does = (
                f"It scores each record with the probability that {target} is 1, for decisions "
                f"at threshold {self.report.threshold:.2f} or for ranking"
            )
            misuse = "Reading scores as calibrated beyond the calibration section, or moving the "
            misuse += "threshold without evaluating the new one."
        use = (
            spec.description.strip() or "No description was given in the spec.",
            f"{does}, on records like those of the training window: same source, feature "
            "definitions and population.",
        )
        out = [
            f"Other populations, products or sources, or periods far from {self._days()}.",
            f"Decisions about `{spec.sensitive_attribute}`: it is withheld from the model and "
            "kept only to measure gaps between its groups; other attributes were not examined.",
            misuse,
            "Fully automated decisions about people without human review or a way to appeal.",
        ]
        if not self.passed:
            out.append("Serving this version at all: it failed its gates (see Gates).")
        return Section("Intended use", use), Section("Out-of-scope use", (Bullets(tuple(out)),))

    def _training_data(self) -> Section:
        manifest = self.training_set
        stats: dict[str, dict[str, Any]] = manifest.get("split_stats", {})
        digests: dict[str, str] = manifest.get("split_digests", {})
        rows = [
            {"split": s, "days": self._days(s), **counts, "digest": digests.get(s)}
            for s, counts in stats.items()
        ]
        return Section(
            "Training data",
            (
                f"Window {self._days()}, split by time (oldest days train, newest test).",
                f"Training set digest `{manifest['digest']}` (SHA-256 of the snapshot).",
                rows_table(rows),
            ),
        )

    def _limitations(self) -> Section:
        report, metric = self.report, traits(self.report.task).fairness_gate_metric
        items = [
            f"Evaluated on one held-out time window ({self._days('test')}); later data may "
            "differ as the population drifts, which is why predictions are monitored.",
        ]
        excluded = report.fairness.get("groups_excluded") or []
        if excluded:
            items.append(
                f"Slices {format_value(excluded)} could not be compared: their gaps are unknown."
            )
        worst = max(
            report.calibration,
            key=lambda r: abs(r["mean_predicted"] - r["observed_rate"]),
            default=None,
        )
        if worst is not None:
            gap = abs(worst["mean_predicted"] - worst["observed_rate"])
            low, high = format_value(worst["bin_lower"]), format_value(worst["bin_upper"])
            items.append(
                f"Calibration error {report.ece:.4f}; the worst bin ({low} to {high}) is off by "
                f"{gap:.4f}."
            )
        items.append(
            f"Passing the fairness gate means `{metric}` stayed under its limit on this test set "
            "only; it does not guarantee fair outcomes for every group or person."
        )
        if self.spec.source.is_simulator:
            items.append(f"Trained on simulated data ({self.spec.source.uri}), not real records.")
        items += [f"**{g.name}** failed: {g.description}" for g in self.gates if not g.passed]
        return Section("Limitations", (Bullets(tuple(items)),))

    def _lineage(self) -> Section:
        tags, model = self.model.get("tags", {}), self.model
        rows = (
            ("registered model", f"{model['name']} v{model['version']}"),
            ("MLflow run id", model.get("run_id")),
            ("Dagster run id (training)", tags.get(config.TAG_DAGSTER_RUN_ID)),
            ("git commit", tags.get(config.TAG_GIT_COMMIT)),
            ("artifact sha256", tags.get(config.TAG_ARTIFACT_SHA256)),
            ("training set digest", tags.get(config.TAG_TRAINING_DIGEST)),
            ("test set digest", tags.get(config.TAG_TEST_DIGEST)),
        )
        trace = f"Trace it: `lifecycle lineage {model['name']} {model['version']}`."
        return Section("Lineage", (Table(("field", "value"), rows), trace))

    def sections(self) -> list[Section]:
        use, out_of_scope = self._intended_use()
        return [
            self._details(),
            use,
            out_of_scope,
            self._training_data(),
            metrics_section(self.report),
            slices_section(self.report, self.spec.sensitive_attribute),
            fairness_section(self.report, self.gates),
            calibration_section(self.report),
            gates_section(self.gates),
            self._limitations(),
            self._lineage(),
        ]

    def to_markdown(self) -> str:
        """The card as Markdown (no images: the HTML card embeds the plots)."""
        sections = self.sections()
        if self.plots:
            names = ", ".join(self.plots)
            sections.append(Section("Plots", (f"Embedded in `{HTML_FILE}`: {names}.",)))
        return markdown_document(self.title, _status(self.gates), sections)

    def to_html(self) -> str:
        """The card as one self-contained page: escaped text, inline CSS, embedded plots."""
        return html_document(self.title, _status(self.gates), self.sections(), self.plots)
