"""A realistic, seeded credit-risk stream: one batch per day, with knobs for three kinds of shift.

The default rows never come from the network: they are generated here, deterministically from
(seed, day), so the same day always yields the same batch and therefore the same content hash.

- covariate shift moves the applicant population (lower incomes and credit scores, bigger loans);
- concept shift changes how features relate to default (debt-to-income matters more);
- label shift raises the base default rate without changing the features.

Each row also carries `loss_amount`, the money lost on the loan (zero unless it defaulted): the
target of the built-in regressor. Its severity depends on collateral and purpose, and concept
shift makes losses heavier.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

HOME_OWNERSHIP = ("rent", "own", "mortgage", "other")
LOAN_PURPOSE = (
    "debt_consolidation",
    "home_improvement",
    "car",
    "education",
    "medical",
    "business",
    "other",
)
REGIONS = ("north", "south", "east", "west")
GENDERS = ("female", "male", "nonbinary")


@dataclass(frozen=True)
class ShiftKnobs:
    """Strength of each shift, 0 for none and about 1 for a strong, clearly visible one."""

    covariate: float = 0.0
    concept: float = 0.0
    label: float = 0.0


# Rows a simulated day holds unless the spec's `source.simulator.rows_per_day` says otherwise.
ROWS_PER_DAY = 400


def _day_rng(seed: int, day: dt.date) -> np.random.Generator:
    return np.random.default_rng([seed, day.toordinal()])


def simulate_day(
    day: dt.date,
    *,
    seed: int = 42,
    rows_per_day: int = ROWS_PER_DAY,
    shift: ShiftKnobs | None = None,
    label_noise: float = 0.0,
) -> pl.DataFrame:
    """Generate one day's applications with their default labels.

    `label_noise` is the fraction of labels replaced by coin flips at the base rate, as a broken
    labelling pipeline would; at 1.0 labels carry no signal at all.
    """
    shift = shift or ShiftKnobs()
    rng = _day_rng(seed, day)
    n = rows_per_day

    gender = rng.choice(GENDERS, size=n, p=[0.48, 0.48, 0.04])
    age = np.clip(rng.normal(41, 12, n), 18, 90).round()
    income = np.exp(rng.normal(10.9 - 0.35 * shift.covariate, 0.55, n)).round(-1)
    credit_score = np.clip(rng.normal(680 - 45 * shift.covariate, 70, n), 300, 850).round()
    loan_amount = np.exp(rng.normal(9.5 + 0.3 * shift.covariate, 0.7, n)).round(-1)
    loan_term = rng.choice([12, 24, 36, 48, 60, 72], size=n, p=[0.08, 0.17, 0.35, 0.15, 0.2, 0.05])
    debt_to_income = np.clip(rng.gamma(2.0, 0.17 + 0.05 * shift.covariate, n), 0, 5).round(3)
    open_accounts = rng.poisson(6, n)
    delinquencies = rng.poisson(0.3 + 0.3 * shift.covariate, n)
    employment_years = np.clip(rng.exponential(7, n), 0, 60).round(1)
    home = rng.choice(HOME_OWNERSHIP, size=n, p=[0.38, 0.22, 0.36, 0.04])
    purpose = rng.choice(LOAN_PURPOSE, size=n, p=[0.35, 0.12, 0.15, 0.08, 0.08, 0.12, 0.10])
    region = rng.choice(REGIONS, size=n, p=[0.3, 0.25, 0.25, 0.2])

    dti_weight = 2.2 + 2.5 * shift.concept
    score_weight = -0.012 * (1 - 0.6 * shift.concept)
    logit = (
        -1.7
        + 1.2 * shift.label
        + dti_weight * (debt_to_income - 0.34)
        + score_weight * (credit_score - 680)
        + 0.45 * (np.log(loan_amount) - np.log(income) + 1.4)
        + 0.5 * delinquencies
        - 0.04 * (employment_years - 7)
        - 0.015 * (age - 41)
        + 0.25 * (home == "rent")
        + 0.35 * (purpose == "business")
        + 0.2 * (purpose == "medical")
        + 0.004 * (loan_term - 36)
    )
    default = rng.random(n) < 1 / (1 + np.exp(-logit))
    noisy = rng.random(n) < label_noise
    default = np.where(noisy, rng.random(n) < default.mean(), default)

    # Values go missing as they do in application forms: some optional fields left blank.
    income_missing = rng.random(n) < 0.04
    score_missing = rng.random(n) < 0.03
    employment_missing = rng.random(n) < 0.05

    seconds = np.sort(rng.integers(0, 86_400, n))
    # Drawn last, so that adding it left every earlier column (and batch hash) unchanged.
    severity = np.clip(
        0.45
        + 0.15 * shift.concept
        + 0.2 * (home == "rent")
        - 0.15 * (home == "mortgage")
        - 0.12 * (purpose == "car")
        + 0.002 * (loan_term - 36)
        + rng.normal(0, 0.08, n),
        0.05,
        1.0,
    )
    loss_amount = np.where(default, loan_amount * severity, 0.0).round(2)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    prefix = f"{day:%Y%m%d}-"  # formatted once: strftime per row was most of a day's cost
    return pl.DataFrame(
        {
            "application_id": [f"{prefix}{i:06d}" for i in range(n)],
            "event_time": [start + dt.timedelta(seconds=int(s)) for s in seconds],
            "age": age,
            "income": np.where(income_missing, np.nan, income),
            "loan_amount": loan_amount,
            "loan_term_months": loan_term.astype(float),
            "credit_score": np.where(score_missing, np.nan, credit_score),
            "debt_to_income": debt_to_income,
            "num_open_accounts": open_accounts.astype(float),
            "num_delinquencies": delinquencies.astype(float),
            "employment_years": np.where(employment_missing, np.nan, employment_years),
            "home_ownership": home,
            "loan_purpose": purpose,
            "region": region,
            "gender": gender,
            "default": default.astype(np.int8),
            "loss_amount": loss_amount,
        }
    ).with_columns(
        pl.col("event_time").dt.cast_time_unit("us"),
        pl.col("income", "credit_score", "employment_years").fill_nan(None),
    )


def simulate_range(
    start: dt.date,
    days: int,
    *,
    seed: int = 42,
    rows_per_day: int = ROWS_PER_DAY,
    shift: ShiftKnobs | None = None,
) -> list[tuple[dt.date, pl.DataFrame]]:
    """Generate `days` consecutive daily batches starting at `start`."""
    return [
        (day, simulate_day(day, seed=seed, rows_per_day=rows_per_day, shift=shift))
        for day in (start + dt.timedelta(days=offset) for offset in range(days))
    ]
