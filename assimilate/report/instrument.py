"""The instrument in an instrumental-variables study's memo: what a LATE is, how strong the first stage was.

A 2SLS estimate is the average effect on the compliers (the units whose treatment the instrument
changed), not on everyone; how many those are and how strongly the instrument moved them decide
whether the estimate can be trusted. So the memo names the instrument, gives the latest batch's
first-stage coefficient, its effective F against the study's gate and the Anderson-Rubin interval
(valid however weak the instrument), and says in words what a whole-line interval means.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd

from assimilate.estimators.iv_diagnostics import IV_METHOD, AndersonRubinSet, anderson_rubin_set_of
from assimilate.estimators.result import EffectEstimate
from assimilate.report._document import Block, Heading, Paragraph
from assimilate.report.memo_inputs import MemoInputs, format_statistic
from assimilate.report.units import EffectScale

WEAK_INSTRUMENT = "weak_instrument"


def with_stored_diagnostics(inputs: MemoInputs, effects: pd.DataFrame) -> MemoInputs:
    """An IV study's memo inputs whose latest 2SLS estimate carries its stored diagnostics.

    The first stage and the Anderson-Rubin set are stored with each batch's estimate
    (``batch_effects.diagnostics_json``); the memo's instrument section reads them from the estimate.
    Other designs, or a table without the column, are returned unchanged.
    """
    if inputs.design.kind != "iv" or effects.empty or "diagnostics_json" not in effects.columns:
        return inputs
    rows = effects[(effects["partition_key"].astype(str) == inputs.latest) & (effects["method"] == IV_METHOD)]
    if rows.empty:
        return inputs
    stored = json.loads(rows["diagnostics_json"].iloc[-1] or "{}")

    def restored(estimate: EffectEstimate) -> EffectEstimate:
        if estimate.method != IV_METHOD:
            return estimate
        estimand = stored.get("estimand", estimate.estimand)
        return replace(estimate, estimand=estimand, diagnostics={**estimate.diagnostics, **stored})

    return replace(inputs, latest_estimates=tuple(restored(e) for e in inputs.latest_estimates))


def _ar_text(ar: AndersonRubinSet, scale: EffectScale) -> str:
    """The set on the effect's scale, with its unit; an open end as -inf/inf."""
    if not ar.intervals:
        return "empty (the model is rejected at every effect)"
    pieces = " or ".join(
        f"{'(' if math.isinf(lo) else '['}{scale.number(lo)}, {scale.number(hi)}{')' if math.isinf(hi) else ']'}"
        for lo, hi in ar.intervals
    )
    return f"{pieces} {scale.unit}"


def _ar_meaning(ar: AndersonRubinSet) -> str:
    if ar.kind == "whole_line":
        return (
            " It is the whole line: this batch's data are consistent with any effect, because the "
            "instrument barely moved the treatment."
        )
    if not ar.bounded:
        return " It is unbounded: the instrument is too weak in this batch to rule out large effects."
    return ""


def instrument_blocks(inputs: MemoInputs, scale: EffectScale) -> list[Block]:
    """The memo's "Instrument and compliers" subsection (empty unless the design is ``iv``)."""
    design = inputs.design
    if design.kind != "iv":
        return []
    names = ", ".join(design.instruments) or "not named"
    treatment = f" ({inputs.card.treatment})" if inputs.card is not None else ""
    blocks: list[Block] = [
        Heading("Instrument and compliers"),
        Paragraph(
            "The estimate is a LATE (local average treatment effect): the average effect of the treatment"
            f"{treatment} among the compliers, the units whose treatment the instrument ({names}) changed. "
            "Units who would be treated anyway (always-takers) or never (never-takers) do not inform it, so it "
            "need not equal the effect on the treated or on everyone.",
            lead="What the number is:",
        ),
    ]
    latest = inputs.latest
    estimate = next((e for e in inputs.latest_estimates if e.method == IV_METHOD), None)
    first = estimate.diagnostics.get("first_stage") if estimate is not None else None
    if estimate is None or not first:
        blocks.append(Paragraph(f"Batch {latest} has no {IV_METHOD} estimate, so no first stage to report."))
        return blocks
    gate = next((v for v in inputs.verdicts.get(latest, ()) if v.name.endswith(WEAK_INSTRUMENT)), None)
    threshold = f" (the gate needs at least {format_statistic(gate.threshold)})" if gate is not None else ""
    verdict = {"pass": ": it passes", "fail": ": it fails, so the batch is kept out of the posterior"}
    text = (
        f"effective first-stage F {format_statistic(first.get('effective_f'))}{threshold}"
        f"{verdict.get(gate.status, '') if gate is not None else ''}."
    )
    coefficients = first.get("coefficients") or {}
    errors = first.get("std_errors") or {}
    if len(coefficients) == 1:
        ((name, value),) = coefficients.items()
        se = f" (SE {format_statistic(errors[name])})" if errors.get(name) is not None else ""
        # With a 0/1 instrument and treatment, under monotonicity, the first-stage coefficient is
        # the compliers' share of the units (Angrist, Imbens & Rubin 1996).
        text += (
            f" First stage: {name} moves the treatment by {format_statistic(value)}{se}; "
            "with a 0/1 instrument and treatment this is the compliers' share of the units."
        )
    try:
        ar = anderson_rubin_set_of(estimate)
    except ValueError as error:
        text += f" Anderson-Rubin interval: not available ({error})."
    else:
        text += (
            f" Anderson-Rubin {100 * (1 - ar.alpha):g}% interval: {_ar_text(ar, scale)}, valid however weak "
            f"the instrument.{_ar_meaning(ar)}"
        )
    blocks.append(Paragraph(text, lead=f"Latest batch ({latest}):"))
    return blocks
