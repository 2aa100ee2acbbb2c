"""Words the memo uses for its technical parts: check titles, failure reasons, the drift model.

Check names come from the catalogue (:func:`assimilate.diagnostics.catalogue.check_title`, which
takes a property or a Dagster name); the few checks of the posterior it does not list have their
titles here. The drift model is said as it is: stable when the process variance is zero, otherwise
how far the effect may move per batch, in the outcome's unit.

Example
-------
>>> check_name("check_covariate_table_sample_ratio_mismatch"), check_name("nis_calibration")
('Sample-ratio mismatch', 'Calibration of the surprises')
>>> drift_model(4e-6, "estimated", EffectScale.of(outcome_type="binary", sd=0.012))[:54]
'The effect may move by about 0.20 percentage points pe'
"""

from __future__ import annotations

import math
import re

from assimilate.diagnostics.catalogue import check_spec, check_title
from assimilate.report.units import EffectScale

# Checks of the posterior the catalogue does not list (it lists the pipeline's asset checks).
_TITLES = {
    "nis_calibration": "Calibration of the surprises",
    "max_abs_smd": "Covariate balance",
}
_QUESTIONS = {
    "nis_calibration": "The batches' squared standardized surprises average about 1, as the filter's model expects.",
}


def check_name(name: str) -> str:
    """The human title of a check, for the memo's prose and tables."""
    return _TITLES.get(name) or check_title(name)


def check_question(name: str) -> str:
    """What the check asks, from the catalogue ('' when it does not know the check)."""
    if name in _QUESTIONS:
        return _QUESTIONS[name]
    try:
        return check_spec(name).question
    except KeyError:
        return ""


def without_batch(reason: str, batch: str) -> str:
    """A verdict's reason without a leading ``batch <label>:`` (the memo's line already names the batch)."""
    text = reason.strip()
    stripped = re.sub(rf"^batch {re.escape(batch)}(:\s*|$)", "", text)
    return stripped.strip()


def process_var_words(process_var: float, source: str | None) -> str:
    """``process variance 4.1e-06, estimated from the batches`` (the source only when known)."""
    said = {"estimated": ", estimated from the batches", "set": ", set in the study"}.get(source or "", "")
    return f"process variance {process_var:.3g}{said}"


def stable(process_var: float) -> bool:
    """Whether the filter models the effect as constant (zero process variance)."""
    return not (math.isfinite(process_var) and process_var > 0)


def drift_model(process_var: float, source: str | None, scale: EffectScale) -> str:
    """One sentence: how the filter lets the effect change from batch to batch."""
    if stable(process_var):
        return (
            f"The filter models the effect as stable, the same in every batch ({process_var_words(0.0, source)}): "
            "the posterior pools all admitted batches."
        )
    return (
        f"The effect may move by about {scale.sd(process_var)} per batch (one standard deviation of a "
        f"random walk; {process_var_words(process_var, source)}): the posterior weighs recent batches more."
    )
