"""The descriptive sections of a decision memo: question, design, diagnostics, checklist,
assumptions and limitations (the verdict sections live in :mod:`assimilate.report.memo`)."""

from __future__ import annotations

import math
from collections import Counter

from assimilate.estimators.result import ESTIMAND_WORDS
from assimilate.report._document import Block, Bullets, Heading, Image, Paragraph, Section, Table
from assimilate.report._words import check_name, process_var_words, stable, without_batch
from assimilate.report.checklist import diagnostic_checklist
from assimilate.report.did_memo import ASSUMPTION as DID_ASSUMPTION
from assimilate.report.did_memo import DESIGN_WORDS as DID_DESIGN_WORDS
from assimilate.report.memo_inputs import MemoInputs, format_statistic

VERDICT_WORD = {"pass": "pass", "fail": "FAIL", "undefined": "not assessed"}


def question(inputs: MemoInputs) -> Section:
    card = inputs.card
    if card is None:
        return Section(
            "Question",
            (
                Paragraph(
                    "The business and causal questions were not stated: the study has no estimand card."
                ),
            ),
        )
    return Section(
        "Question",
        (
            Paragraph(card.business_question, lead="Business question:"),
            Paragraph(card.causal_question, lead="Causal question:"),
        ),
    )


def estimand_and_design(inputs: MemoInputs, dag: Image | None = None) -> Section:
    card, design = inputs.card, inputs.design
    blocks: list[Block] = []
    if card is None:
        blocks.append(
            Paragraph(
                "The estimand was not stated (no estimand card): the number below is an average "
                "difference between treated and control units whose population and contrast are unspecified."
            )
        )
    else:
        meaning = {**ESTIMAND_WORDS, "ATE": "average effect over the target population"}
        elements = (
            ("estimand", f"{card.estimand} ({meaning[card.estimand]})"),
            ("unit", card.unit),
            ("treatment", card.treatment),
            ("control condition", card.control_condition),
            ("outcome", card.outcome),
            ("time window", card.time_window),
            ("target population", card.target_population),
        )
        blocks.append(Table(("element", "as stated"), elements))
    if design.kind == "randomized":
        split = (
            f"designed treated share {design.treated_share:g}"
            if design.treated_share
            else "designed split not given"
        )
        kind = f"randomized ({split})."
    elif design.kind == "iv":
        kind = (
            f"instrumental variables: the study did not assign treatment, but the instrument "
            f"{', '.join(design.instruments)} moved it. The estimate is a LATE: the average effect among the "
            "compliers, the units whose treatment the instrument changes, not among everyone. It holds if the "
            "instrument is as good as random given the covariates, reaches the outcome only through the "
            "treatment, and never pushes anyone against it (monotonicity); batches whose first stage is weak "
            "are kept out."
        )
    elif design.kind == "did":
        kind = DID_DESIGN_WORDS
    else:
        kind = "observational: the study did not assign treatment; the estimate relies on adjusting for measured pre-treatment covariates."
    blocks.append(Paragraph(kind, lead="Design:"))
    blocks.append(Paragraph(", ".join(design.adjustment_set) or "none", lead="Adjustment set:"))
    if dag is not None:
        blocks.append(dag)
    direction = inputs.desired_direction or "not stated"
    blocks.append(
        Paragraph(
            f"{inputs.primary_estimator}; desired direction of {inputs.outcome_name}: {direction}.",
            lead="Primary estimator:",
        )
    )
    shortlist = design.method_shortlist
    if shortlist is not None and not shortlist.empty:
        rows = tuple(
            (str(r["method"]), "yes" if bool(r["valid"]) else "no", str(r["reason"]))
            for r in shortlist.to_dict(orient="records")
        )
        blocks += [Heading("Method shortlist"), Table(("method", "suitable", "reason"), rows)]
    return Section("Estimand and design", tuple(blocks))


def key_diagnostics(inputs: MemoInputs) -> Section:
    latest = inputs.verdicts.get(inputs.latest, ())
    blocks: list[Block] = [Heading(f"Checks on the latest batch ({inputs.latest})")]
    if latest:
        rows = tuple(
            (
                check_name(v.name),
                format_statistic(v.value),
                format_statistic(v.threshold),
                v.rule,
                VERDICT_WORD[v.status],
                without_batch(v.reason, inputs.latest),
            )
            for v in latest
        )
        blocks.append(Table(("check", "value", "threshold", "rule", "verdict", "note"), rows))
    else:
        blocks.append(Paragraph("No check results were reported for the latest batch."))
    counts: dict[str, Counter[str]] = {}
    failed_in: dict[str, list[str]] = {}
    for batch in inputs.batch_order():
        for v in inputs.verdicts.get(batch, ()):
            counts.setdefault(v.name, Counter())[v.status] += 1
            if v.failed:
                failed_in.setdefault(v.name, []).append(batch)
    blocks.append(Heading(f"Over all {len(inputs.batch_order())} batches"))
    if counts:
        totals = tuple(
            (
                check_name(name),
                str(c["pass"]),
                str(c["fail"]),
                str(c["undefined"]),
                ", ".join(failed_in.get(name, [])) or "none",
            )
            for name, c in counts.items()
        )
        blocks.append(Table(("check", "passed", "failed", "not assessed", "failed in"), totals))
    else:
        blocks.append(Paragraph("No check results were reported."))
    return Section("Key diagnostics", tuple(blocks))


def checklist(inputs: MemoInputs) -> Section:
    rows = tuple((row.item, row.status, row.note) for row in diagnostic_checklist(inputs))
    return Section("Diagnostic checklist", (Table(("item", "status", "note"), rows),))


def assumptions(inputs: MemoInputs) -> Section:
    card, design, result = inputs.card, inputs.design, inputs.result
    required = list(card.required_assumptions) if card is not None else []
    if design.kind == "randomized":
        required.append(
            "Randomized assignment as designed (checked by the sample-ratio test where reported)."
        )
    elif design.kind == "iv":
        # The instrument, not the adjustment, identifies the effect: the treatment may be confounded.
        adjusted = ", ".join(design.adjustment_set) or "no covariates"
        required.append(
            f"The instrument ({', '.join(design.instruments)}) is as good as random given {adjusted}, reaches the "
            "outcome only through the treatment, and pushes no one against it (monotonicity): untestable from the "
            "data, except its strength (the weak-instrument gate). Unmeasured confounding of the treatment and the "
            "outcome is allowed."
        )
    elif design.kind == "did":
        required.append(DID_ASSUMPTION)
    else:
        adjusted = ", ".join(design.adjustment_set) or "no covariates"
        required.append(f"No unmeasured confounding given {adjusted}: untestable from the data.")
    source = inputs.process_var_source
    model = (
        f"one effect, the same in every batch ({process_var_words(0.0, source)})"
        if stable(result.process_var)
        else f"the effect follows a random walk that moves by about {inputs.scale.sd(result.process_var)} "
        f"per batch ({process_var_words(result.process_var, source)})"
    )
    required.append(
        f"The filter's model: {model}, and each batch estimate is unbiased with its stated standard error."
    )
    correlation = (
        "with the supplied covariance between batches"
        if inputs.decision_interval.correlated
        else "and independent of the others (no unit counted in two batches)"
    )
    required.append(
        f"The always-valid interval: each admitted batch estimate is unbiased and close to normal with its stated "
        f"standard error, {correlation}."
    )
    blocks: list[Block] = []
    if card is None:
        blocks.append(
            Paragraph(
                "No estimand card: the study stated no assumptions; those implied by the design and the model follow."
            )
        )
    blocks += [Heading("Required for a causal reading"), Bullets(tuple(required)), Heading("Likely threats")]
    threats = tuple(card.likely_threats) if card is not None and card.likely_threats else ("none stated",)
    blocks.append(Bullets(threats))
    if card is not None and card.variables_to_audit:
        blocks.append(Paragraph(", ".join(card.variables_to_audit), lead="Variables to audit:"))
    return Section("Assumptions", tuple(blocks))


def limitations(inputs: MemoInputs) -> Section:
    result = inputs.result
    items = []
    excluded = inputs.excluded_batches()
    if excluded:
        items.append(
            f"{len(excluded)} batch(es) did not update the posterior or the always-valid interval ({', '.join(excluded)}); "
            "over those periods the posterior only widened."
        )
    undefined = sum(v.status == "undefined" for verdicts in inputs.verdicts.values() for v in verdicts)
    if undefined:
        items.append(f"{undefined} check result(s) were not assessed because the test did not apply.")
    if inputs.card is None:
        items.append(
            "The estimand was not stated, so the population and contrast the number refers to are unspecified."
        )
    if inputs.design.kind == "observational":
        found = inputs.sensitivity
        covered = (
            f"the sensitivity section bounds it for batch {found.batch} only, not for the fused posterior"
            if found is not None and found.analysis is not None
            else "no sensitivity analysis is included"
        )
        items.append(
            f"Observational design: unmeasured confounding cannot be ruled out from the data; {covered}."
        )
    scale = inputs.scale
    prior = (
        "a diffuse prior (no information before the first batch)"
        if not math.isfinite(result.prior_var)
        else f"its prior (mean {scale.effect(result.prior_mean)}, sd {scale.sd(result.prior_var)})"
    )
    items.append(f"The credible interval is conditional on the filter's model and {prior}.")
    if result.backend == "particle":
        items.append("Particle filter: every posterior number carries Monte Carlo error.")
    if stable(result.process_var):
        items.append(
            "The filter models the effect as stable (the same in every batch): if it does drift, the posterior "
            "lags behind, and the checks of the posterior (surprises of the batches) are what would show it."
        )
    else:
        items.append(
            f"The posterior lets the effect move by about {scale.sd(result.process_var)} per batch: it "
            "describes the latest batch, not a long-run average."
        )
    if not scale.unit_known:
        items.append(
            "The outcome's unit is not stated (outcome_unit in the study file): effects are in the outcome's own units."
        )
    items.append(
        "The always-valid interval describes the average over the admitted batches, not the latest batch: when the "
        "effect drifts the two intervals answer different questions. It is wider than a one-time interval; that "
        "width is the price of reading the memo after every batch."
    )
    return Section("Limitations", (Bullets(tuple(items)),))
