"""The job-training example (studies/job_training_att.yaml): a programme evaluated on observational data.

Each month a new cohort of 1,500 job seekers registers with the employment office; some enrol in
the training programme (``enrolled``), by their own choice and their adviser's. Who enrols is not
random: younger seekers, those unemployed for longer and those who earned less two years ago enrol
more often, and graduates less often, so the naive difference in later earnings is biased downward
(enrollees would have earned less anyway). Every variable that drives enrolment and earnings is
measured before enrolment: age, degree, earnings two years before (``earnings_2y_before``) and
months unemployed. The outcome is monthly earnings in the six months after the programme
(``earnings``, USD). ``earnings_last_year`` is measured before enrolment too, so the programme
cannot have moved it: the study's negative-control outcome.

The programme adds ``EFFECT_BY_DEGREE`` dollars a month, more for those without a degree: its
effect on those who enrolled (the ATT, the study's estimand) is the average of those effects over
the enrollees, about ``TRUE_ATT`` (:func:`true_att` gives each cohort's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

SEED = 20250106
MONTHS = tuple(f"2025-{m:02d}" for m in range(1, 13))
COHORT = 1500
DEGREES = ("none", "high_school", "college")
DEGREE_SHARES = (0.3, 0.5, 0.2)
EFFECT_BY_DEGREE = {"none": 350.0, "high_school": 250.0, "college": 100.0}  # USD a month
TRUE_ATT = 270.0  # about: the enrollees are mostly without a degree or with high school


def cohort(rng: np.random.Generator, month: str, n: int = COHORT) -> pd.DataFrame:
    """One month's cohort of job seekers: pre-enrolment profile, enrolment, later earnings."""
    age = rng.uniform(18, 55, n).round(0)
    degree = rng.choice(DEGREES, size=n, p=DEGREE_SHARES)
    grade = np.select([degree == "high_school", degree == "college"], [1.0, 2.0], 0.0)
    earned = np.maximum(0.0, 1500 + 350 * grade + 15 * (age - 35) + rng.normal(0, 450, n)).round(0)
    unemployed = rng.poisson(4.0, n)
    # Self-selection on the measured profile only (no unmeasured confounder): overlap everywhere.
    logit = (
        -0.9 - 0.025 * (age - 35) - 0.0008 * (earned - 1800) + 0.10 * (unemployed - 4) - 0.6 * (grade == 2)
    )
    enrolled = rng.binomial(1, expit(logit))
    effect = np.array([EFFECT_BY_DEGREE[d] for d in degree])
    baseline = 300 + 0.7 * earned + 12 * (age - 35) - 35 * unemployed + 180 * grade
    earnings = baseline + effect * enrolled + rng.normal(0, 400, n)
    last_year = 0.8 * earned + 10 * (age - 35) - 40 * unemployed + 150 * grade + rng.normal(0, 350, n)
    return pd.DataFrame(
        {
            "person_id": [f"{month}-{i:04d}" for i in range(n)],
            "age": age,
            "degree": degree,
            "earnings_2y_before": earned,
            "months_unemployed": unemployed,
            "enrolled": enrolled,
            "earnings": earnings.round(2),
            "earnings_last_year": last_year.round(2),
        }
    )


def true_att(frame: pd.DataFrame) -> float:
    """The cohort's effect on those who enrolled: the mean of their effects."""
    treated = frame.loc[frame["enrolled"] == 1, "degree"]
    return float(treated.map(EFFECT_BY_DEGREE).mean())


def job_training_months(rng: np.random.Generator, n: int = COHORT) -> list[tuple[str, pd.DataFrame]]:
    """The twelve monthly cohorts of 2025, ``(YYYY-MM, frame)`` in order."""
    return [(month, cohort(rng, month, n)) for month in MONTHS]


def land_job_training(folder: Path) -> list[Path]:
    """The job-training study's twelve monthly CSV files (``YYYY-MM.csv``)."""
    paths = []
    for month, frame in job_training_months(np.random.default_rng(SEED)):
        path = folder / f"{month}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


__all__ = ["TRUE_ATT", "cohort", "job_training_months", "land_job_training", "true_att"]
