"""The catalogue of assumption checks: one entry per check, read by the pipeline, alerts, UI and memo.

A check is known by its property name (``"balance"``); the pipeline's Dagster check is named
``check_<asset>_<property>``. Severity decides what a failure does: an ERROR check that fails keeps
the batch out of the posterior; a WARN check is reported and alerted but admits the batch.

Example
-------
>>> check_title("sample_ratio_mismatch")
'Sample-ratio mismatch'
>>> CHECKS["balance"].severity
'ERROR'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Severity = Literal["ERROR", "WARN"]

ERROR_CONSEQUENCE = "A failure keeps the batch out of the posterior and raises an alert."
WARN_CONSEQUENCE = "A failure is reported and alerted; the batch still enters the posterior."


@dataclass(frozen=True)
class CheckSpec:
    """One assumption check: where it sits, what it asks, and what a failure does.

    Attributes
    ----------
    name : str
        Property name (``check_<asset>_<name>`` in Dagster).
    asset : str
        The asset the check sits on (the asset its reason belongs to).
    title : str
        Human words for the memo and the UI.
    question : str
        One sentence: what the check asks of the batch (or of the posterior).
    severity : {"ERROR", "WARN"}
        ERROR checks gate the batch; WARN checks inform.
    """

    name: str
    asset: str
    title: str
    question: str
    severity: Severity

    @property
    def description(self) -> str:
        """The question followed by what a failure does (the UI's check description)."""
        consequence = ERROR_CONSEQUENCE if self.severity == "ERROR" else WARN_CONSEQUENCE
        return f"{self.question} {consequence}"


_SPECS = (
    CheckSpec(
        "data_quality",
        "raw_batch",
        "Data quality",
        "The landed file can be judged row by row: readable, the study's columns present, both arms there, not another batch's file.",
        "ERROR",
    ),
    CheckSpec(
        "schema",
        "covariate_table",
        "Row schema",
        "The share of quarantined rows stays under the study's max_quarantine_share.",
        "ERROR",
    ),
    CheckSpec(
        "post_treatment_exclusion",
        "covariate_table",
        "No post-treatment controls",
        "No model column descends from the treatment (causal graph), derives from a declared post-treatment "
        "column, or is determined by the outcome or the treatment in the data (the data screen).",
        "ERROR",
    ),
    CheckSpec(
        "sample_ratio_mismatch",
        "covariate_table",
        "Sample-ratio mismatch",
        "The treated share matches the design's planned share (randomized studies only).",
        "ERROR",
    ),
    CheckSpec(
        "overlap",
        "propensity_model",
        "Propensity overlap",
        "Few units have a propensity score outside [eps, 1 - eps], beyond the fit's own noise.",
        "ERROR",
    ),
    CheckSpec(
        "balance",
        "batch_effect",
        "Covariate balance",
        "After weighting, no covariate's standardized mean difference exceeds the bound beyond noise.",
        "ERROR",
    ),
    CheckSpec(
        "estimation",
        "batch_effect",
        "Estimation",
        "The primary estimator returned a finite estimate with a usable standard error.",
        "ERROR",
    ),
    CheckSpec(
        "weak_instrument",
        "batch_effect",
        "Instrument strength",
        "The instrument moves the treatment strongly enough (effective first-stage F at or above the study's "
        "min_first_stage_f) for the 2SLS interval to be trusted; the Anderson-Rubin interval stays valid either way.",
        "ERROR",
    ),
    CheckSpec(
        "first_stage_sign",
        "batch_effect",
        "First-stage sign",
        "The instrument pushes the treatment in the same direction as in earlier batches, so the batches' "
        "effects are about the same compliers.",
        "WARN",
    ),
    CheckSpec(
        "pre_trend",
        "batch_effect",
        "Pre-trend (parallel trends)",
        "Before any cohort adopted, the adopting and comparison units' outcomes moved in parallel: the "
        "pre-period placebo effects are jointly zero (difference in differences).",
        "ERROR",
    ),
    CheckSpec(
        "returning_units",
        "batch_effect",
        "Returning units",
        "Units seen in earlier batches are few, or their correlation is accounted for in the fusion.",
        "WARN",
    ),
    # The refuters (opt-in: the study's refuters key; WARN unless the study makes one ERROR). Each
    # question is the refuter's null hypothesis; a failure rejects it (docs/GATES.md, Refuters).
    CheckSpec(
        "placebo_treatment",
        "batch_effect",
        "Placebo treatment",
        "With the treatment permuted within the design's strata, the primary estimate is zero.",
        "WARN",
    ),
    CheckSpec(
        "negative_control_outcome",
        "batch_effect",
        "Negative-control outcome",
        "The treatment has no effect on the declared negative-control outcome (causal graph role "
        "negative_control) given the covariates.",
        "WARN",
    ),
    CheckSpec(
        "random_common_cause",
        "batch_effect",
        "Random common cause",
        "Adding an independent random covariate moves the primary estimate by no more than a "
        "well-conditioned estimator's noise.",
        "WARN",
    ),
    CheckSpec(
        "data_subsets",
        "batch_effect",
        "Data subsets",
        "On random subsets of the rows the primary estimate differs from the batch's only by subsampling noise.",
        "WARN",
    ),
    CheckSpec(
        "innovation",
        "effect_posterior",
        "Surprise of the latest batch",
        "The latest batch's standardized innovation stays within the study's innovation_z.",
        "WARN",
    ),
    CheckSpec(
        "one_sided_innovations",
        "effect_posterior",
        "Persistent one-sided surprises",
        "Innovations are not persistently of one sign (a drift the filter does not track).",
        "WARN",
    ),
    CheckSpec(
        "particle_ess",
        "effect_posterior",
        "Particle effective sample size",
        "The particle filter's effective sample size stays above min_ess_fraction (particle backend only).",
        "WARN",
    ),
    CheckSpec(
        "effect_trend",
        "effect_posterior",
        "Trend in the effect",
        "The effect shows no trend over the batches (novelty or primacy) at the 5% level.",
        "WARN",
    ),
    # Opt-in (the study's calibration_audit key; ERROR when the study refuses a failed estimator).
    CheckSpec(
        "calibration_audit",
        "effect_posterior",
        "Calibration audit",
        "Under placebo treatments (zero effect) the primary estimator's 95% intervals cover zero at their "
        "nominal rate on the study's admitted batches.",
        "WARN",
    ),
    CheckSpec(
        "segment_difference",
        "segment_effects",
        "Effect differs by segment",
        "No segment's effect in the batch differs from the rest's beyond chance, after adjusting for the "
        "number of segments (the study's multiplicity rule).",
        "WARN",
    ),
    CheckSpec(
        "fused_segment_difference",
        "segment_posterior",
        "Fused effect differs by segment",
        "No segment's fused effect (partially pooled over the batches) differs from the rest's beyond "
        "chance, after adjusting for the number of segments.",
        "WARN",
    ),
)

CHECKS: Mapping[str, CheckSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Every check by property name."""


def check_spec(name: str) -> CheckSpec:
    """The catalogue entry of a check, by property name or by Dagster name ``check_<asset>_<name>``."""
    if name in CHECKS:
        return CHECKS[name]
    for spec in _SPECS:
        if name == f"check_{spec.asset}_{spec.name}":
            return spec
    raise KeyError(f"no check named {name!r} in the catalogue; known: {', '.join(CHECKS)}")


def check_title(name: str) -> str:
    """Human title of a check (property or Dagster name); an unknown name is made readable."""
    try:
        return check_spec(name).title
    except KeyError:
        readable = name.removeprefix("check_").replace("_", " ")
        return readable[:1].upper() + readable[1:]


__all__ = [
    "CHECKS",
    "ERROR_CONSEQUENCE",
    "WARN_CONSEQUENCE",
    "CheckSpec",
    "Severity",
    "check_spec",
    "check_title",
]
