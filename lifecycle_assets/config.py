"""One source of truth for alias names, gate thresholds, serving limits and project paths.

The pipeline, the service and the CLI all import from here, so a threshold or an alias name
exists exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

# The typed settings object lives in its own module; these names keep every caller's import.
from lifecycle_assets.settings import LifecycleSettings as Settings
from lifecycle_assets.settings import ServingLimits

__all__ = ["ServingLimits", "Settings"]

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
CANARY_ALIAS = "canary"
SHADOW_ALIAS = "shadow"

# Tags written on every registered model version; the service and `trace` read them back.
TAG_ARTIFACT_SHA256 = "artifact_sha256"
TAG_ARTIFACT_PATH = "artifact_path"
# Set at registration once the stored skops file has loaded with the allow-list and scored the
# input example as the fitted pipeline did; its value is `registry.artifacts.load_proof()`.
TAG_ARTIFACT_LOAD_PROOF = "artifact_load_proof"
TAG_TRAINING_DIGEST = "training_set_digest"
TAG_TEST_DIGEST = "test_set_digest"
# SHA-256 of the spec fields that shape the model (`data.fingerprint.model_spec_hash`).
TAG_MODEL_SPEC = "model_spec_sha256"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
# Set at registration by a training run whose evaluation seals its verdict (`verdicts.py`): a
# file of such a version with no seal is a lost record, never one "evaluated before seals".
TAG_VERDICT_SEALED = "verdict_sealed"
TAG_GIT_COMMIT = "git_commit"
TAG_SPEC_NAME = "spec_name"
TAG_BENTO_TAG = "bento_tag"
# Team mode: where the Bento was exported in shared storage, and the archive's SHA-256.
TAG_BENTO_URL = "bento_url"
TAG_BENTO_SHA256 = "bento_sha256"
TAG_REFERENCE_PROFILE = "reference_profile"
REFERENCE_PROFILE_FILE = "reference_profile.json"
# Model version tag holding the run-relative path of the Markdown card (like reference_profile).
TAG_MODEL_CARD = "model_card"
# One drift episode retrains once: the drift sensor waits this long after a drift-triggered run.
DRIFT_RETRAIN_COOLDOWN_HOURS = 24
# Labels arrive late; live performance of the last this many days is re-scored every night.
LABEL_REFRESH_DAYS = 7

MODEL_ARTIFACT_NAME = "model"
SKOPS_FILE = "model.skops"


@dataclass(frozen=True)
class GateThresholds:
    """Thresholds of the blocking gates that stand between a trained model and `champion`.

    Each model's spec may override any field (`gates:` in the spec file). Classifiers are judged
    on ROC AUC and the true-positive-rate gap, regressors on R² and the gap in mean absolute error
    between slices relative to the overall error.
    """

    min_roc_auc: float = 0.70
    min_r2: float = 0.30
    # A challenger's primary metric (ROC AUC or R²) may trail the champion's on the same test
    # set by at most this much.
    max_metric_regression: float = 0.01
    # Largest allowed gap between slices of the sensitive attribute in true-positive rate
    # (equal opportunity difference). Small slices are noisy: about 0.13 was seen by chance alone
    # on 4,800 simulated test rows with a 4% slice.
    max_fairness_gap: float = 0.20
    # Regressors: (largest slice MAE - smallest slice MAE) / overall MAE.
    max_relative_error_gap: float = 0.50
    min_training_rows: int = 1_000
    min_positive_rate: float = 0.02
    max_positive_rate: float = 0.60
    min_rows_per_split: int = 200
    # Slices of the sensitive attribute smaller than this (or holding one class) get
    # "insufficient data" instead of a gap.
    min_slice_size: int = 30
    # Share of the training window's days whose newest batch was quarantined; above it the run
    # does not promote. 0: any quarantined day blocks.
    max_quarantined_share: float = 0.0
    # Source rows whose event timestamp is empty or unreadable (quarantined, in no day); above
    # it the run does not promote. 0: any such row blocks (it may belong to the window).
    max_undated_rows: int = 0


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature, the prediction score and a whole window count as drifted.

    A feature's distribution drifts when it differs significantly (KS p-value for numeric
    columns, chi-square for categorical ones, at most `p_value`) AND by a large amount (an effect
    size at or over its threshold). Either alone misleads: on a million rows a p-value flags
    differences far too small to matter, and on a few hundred rows the effect sizes are noisy
    (normalized Wasserstein reached 0.3 on stable simulated days of 400 rows). Any effect size can
    be switched off with None. The defaults are the usual rules of thumb.
    """

    p_value: float = 0.01
    psi: float | None = 0.2
    ks_statistic: float | None = 0.1
    # Wasserstein-1 distance divided by the reference standard deviation.
    wasserstein: float | None = 0.1
    js_distance: float | None = 0.1
    # Absolute change of the missing rate, e.g. 0.05 means 4% -> 9% missing.
    missing_rate_change: float | None = 0.05
    # The window drifts when at least this share of features drifts, or the score drifts.
    drifted_share: float = 0.3
    # Below this many non-missing values a feature's distribution gets no verdict: too noisy.
    min_rows: int = 100


# Alias ledger: an append-only SQLite file next to the registry state, one lock file per model.
LEDGER_DIR = "registry"
LEDGER_FILE = "ledger.sqlite"
LEDGER_LOCK_DIR = "locks"
# How long an alias operation waits for another process to finish with the same model.
ALIAS_LOCK_TIMEOUT_SECONDS = 30.0
# Version tag that marks a retired version: never an alias target again, never a rollback target.
TAG_RETIRED = "retired"

# Deployment operations (canary, shadow, retire). The canary's traffic share is a
# registered-model tag so the service reads it with the alias, from the registry.
TAG_CANARY_WEIGHT = "canary_weight"
TAG_RETIRED_AT = "retired_at"
TAG_RETIRED_BY = "retired_by"
TAG_RETIRED_REASON = "retired_reason"
TAG_ARCHIVE_PATH = "archive_path"
# Retired versions' artifacts are copied under LIFECYCLE_HOME/<ARCHIVE_DIR>/<model>/v<version>/.
ARCHIVE_DIR = "archive"
ARCHIVE_MANIFEST = "manifest.json"
DEFAULT_SERVICE_URL = "http://127.0.0.1:3001"
# `retire` asks the running service what it serves; a service slower than this counts as absent.
SERVICE_PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class CanaryThresholds:
    """When the automated canary analysis promotes the canary, rolls it back, or waits.

    Fewer rows than `min_rows` per variant give no verdict (wait). Any limit crossed rolls back.
    A promotion also needs `min_labelled_rows` labelled rows per variant when `require_labels`,
    so that a canary is never promoted on its score distribution alone.
    """

    min_rows: int = 200
    # Score distributions of canary and champion on the same traffic: PSI and KS statistic.
    max_score_psi: float = 0.2
    max_score_ks: float = 0.15
    max_mean_score_shift: float = 0.05
    # Share of rows flagged failed: canary minus champion.
    max_error_rate_increase: float = 0.01
    # p95 latency of the canary over the champion's, when the log carries latencies.
    max_latency_ratio: float = 1.5
    min_labelled_rows: int = 100
    max_auc_drop: float = 0.02
    max_accuracy_drop: float = 0.02
    # Regressors: the canary's MAE may exceed the champion's by at most this share.
    max_mae_increase: float = 0.05
    require_labels: bool = True


# Serving in registry mode: how often the service re-reads the aliases it follows, and how long
# shadow scoring of one batch may take before its result is dropped.
REGISTRY_POLL_SECONDS = 2.0
# How long a starting service waits for an unreachable tracking server before it exits.
REGISTRY_WAIT_SECONDS = 20.0
SHADOW_BUDGET_MS = 200.0


@dataclass(frozen=True)
class RetirementPolicy:
    """When the portfolio scorecard names a model as a candidate for retirement, and what it reads.

    A model is a candidate when nobody called it for longer than `max_days_without_traffic`
    (counted from its first registration at most, so a model never deployed yet is not flagged on
    its first day), or when its champion's live primary metric stayed under the spec's gate floor
    (`min_roc_auc`, `min_r2`) in each of its last `metric_floor_windows` labelled days. A day with
    fewer than `min_window_labels` labels is no window: a metric on a handful of rows is noise.
    The scorecard only flags; retiring stays a human decision (`lifecycle retire`).
    """

    max_days_without_traffic: int = 14
    metric_floor_windows: int = 3
    min_window_labels: int = 100
    # Requests and p99 latency are over the last this many days, today included.
    traffic_window_days: int = 7
    # How far back the last request is searched; older silence reads "at least" this long.
    traffic_lookback_days: int = 60
    # Days of live performance read for the floor windows and the trend.
    live_lookback_days: int = 30
    trend_windows: int = 7
    # Gate history covers the newest this many registered versions.
    gate_history_versions: int = 5
