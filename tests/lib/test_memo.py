"""The decision memo: status first, hedged by the evidence, numbers from the result, safe HTML."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from assimilate import balance_table, causal_kalman, estimate_all, sample_ratio_mismatch
from assimilate.design.card import EstimandCard
from assimilate.diagnostics import Verdict, trend_test_of
from assimilate.report import (
    DesignSummary,
    MemoInputs,
    decide,
    decision_memo_html,
    decision_memo_markdown,
    diagnostic_checklist,
    verdicts_from_frame,
)
from assimilate.sequential import confidence_sequence
from assimilate.simulate import simulate_ab_stream, simulate_outreach_stream

METHODS = ("difference_in_means", "regression_adjustment", "ipw", "aipw")
SECTIONS = [
    "Status \u2014 read this first",
    "Question",
    "Estimand and design",
    "Evidence",
    "Key diagnostics",
    "Diagnostic checklist",
    "Assumptions",
    "Sensitivity to an unmeasured confounder",
    "Interpretation under stated assumptions",
    "Limitations",
    "Recommendation",
    "Appendix: check names",
]
# Phrases that state a causal number as settled fact or recommend acting on it.
OVERCLAIMS = re.compile(
    r"the effect is|\bproves?\b|\bproven\b|\bdefinitely\b|\bcertainly\b|\bguarantee|act on the sign|\badopt\b",
    re.IGNORECASE,
)
IMBALANCED = "2025-03"


def _card(**changes: str) -> EstimandCard:
    fields = {
        "business_question": "Does the new checkout raise order value?",
        "causal_question": "Effect of the new checkout flow on order value per visitor",
        "unit": "visitor",
        "treatment": "new checkout",
        "control_condition": "current checkout",
        "outcome": "order value",
        "time_window": "the visit",
        "target_population": "all visitors",
        "estimand": "ATE",
        "required_assumptions": ["randomization as designed"],
        "likely_threats": ["novelty effect"],
    }
    return EstimandCard(**(fields | changes))


def _stream_inputs(
    *,
    tau: float = 0.5,
    n_batches: int = 6,
    imbalanced: bool = False,
    seed: int = 4,
    card: EstimandCard | None = None,
    desired: str | None = "increase",
) -> MemoInputs:
    """A randomized stream run through the library: estimators, balance and SRM checks, Kalman."""
    stream = simulate_ab_stream(
        rng=np.random.default_rng(seed), n_batches=n_batches, tau_start=tau, tau_end=tau
    )
    batches = dict(zip(stream.labels, stream.batches, strict=True))
    if imbalanced:
        # Assignment driven by x in one batch: the covariate is badly imbalanced between arms.
        rng = np.random.default_rng(9)
        batch = batches[IMBALANCED].copy()
        batch["treatment"] = rng.binomial(1, 1 / (1 + np.exp(-2 * batch["x"])))
        batch["outcome"] = tau * batch["treatment"] + 0.2 * batch["x"] + rng.normal(0, 0.3, len(batch))
        batches[IMBALANCED] = batch
    verdicts: dict[str, tuple[Verdict, ...]] = {}
    estimates = {}
    for label, batch in batches.items():
        n_treated = int(batch["treatment"].sum())
        verdicts[label] = (
            balance_table(batch[["x"]], batch["treatment"], threshold=0.25).verdict,
            sample_ratio_mismatch(n_treated, len(batch) - n_treated, expected_treated_share=0.5).verdict,
        )
        estimates[label] = estimate_all(
            batch, treatment="treatment", outcome="outcome", covariates=["x"], methods=METHODS
        )
    failed = {label: tuple(v.name for v in vs if v.failed) for label, vs in verdicts.items()}
    labels = list(batches)
    result = causal_kalman(
        [estimates[b]["difference_in_means"].estimate for b in labels],
        [estimates[b]["difference_in_means"].std_error for b in labels],
        labels=labels,
        excluded=[bool(failed[b]) for b in labels],
        process_var=1e-4,
    )
    return MemoInputs(
        study="ab_checkout",
        result=result,
        design=DesignSummary(kind="randomized", treated_share=0.5, adjustment_set=["x"]),
        latest_estimates=tuple(estimates[labels[-1]].values()),
        primary_estimator="difference_in_means",
        verdicts=verdicts,
        card=_card() if card is None else card,
        exclusions={b: names for b, names in failed.items() if names},
        true_effect=tau,
        desired_direction=desired,  # type: ignore[arg-type]
    )


def _sections(markdown: str) -> dict[str, str]:
    parts = markdown.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1].strip() for part in parts}


@pytest.fixture(scope="module")
def clean() -> MemoInputs:
    return _stream_inputs()


@pytest.fixture(scope="module")
def with_exclusion() -> MemoInputs:
    return _stream_inputs(imbalanced=True)


def test_sections_come_in_the_required_order(clean: MemoInputs) -> None:
    markdown = decision_memo_markdown(clean)
    assert markdown.startswith("# Decision memo: ab_checkout\n")
    assert list(_sections(markdown)) == SECTIONS


def test_an_excluded_batch_is_named_with_its_failed_check_in_the_first_section(
    with_exclusion: MemoInputs,
) -> None:
    assert with_exclusion.result.excluded.tolist() == [False, False, True, False, False, False]
    markdown = decision_memo_markdown(with_exclusion)
    first = _sections(markdown)[SECTIONS[0]]
    assert "Status: provisional" in first
    assert f"Batch {IMBALANCED}: excluded from the posterior: Covariate balance (" in first
    assert "Fix or verify first" in first
    assert "Status: pass" not in markdown
    assert OVERCLAIMS.findall(markdown) == []
    assert "Fix or verify first" in _sections(markdown)["Recommendation"]


def test_a_clean_randomized_stream_passes_and_the_recommendation_follows_the_interval(
    clean: MemoInputs,
) -> None:
    assert clean.result.final_ci[0] > 0  # the simulated effect (0.5) is far from 0
    sections = _sections(decision_memo_markdown(clean))
    assert sections[SECTIONS[0]].startswith("**Status: pass.**")
    recommendation = sections["Recommendation"]
    assert recommendation.startswith(
        "Act: adopt new checkout. The evidence supports the desired increase in order value"
    )
    assert "inconclusive" not in recommendation


@pytest.mark.parametrize(
    ("desired", "headline"),
    [
        ("decrease", "Do not adopt new checkout: the evidence supports an increase"),
        (None, "Act on the sign: the evidence supports an increase in order value"),
    ],
)
def test_the_direction_that_counts_as_good_is_the_callers(desired: str | None, headline: str) -> None:
    inputs = _stream_inputs(desired=desired)
    assert _sections(decision_memo_markdown(inputs))["Recommendation"].startswith(headline)


def test_an_interval_that_includes_zero_is_inconclusive() -> None:
    inputs = _stream_inputs(tau=0.0, n_batches=3, seed=11)
    lower, upper = inputs.result.final_ci
    assert lower < 0 < upper
    assert inputs.status == "pass"
    markdown = decision_memo_markdown(inputs)
    recommendation = _sections(markdown)["Recommendation"]
    assert recommendation.startswith("The evidence is inconclusive")
    assert OVERCLAIMS.findall(markdown) == []


def test_checklist_rows_reflect_the_actual_verdicts(clean: MemoInputs, with_exclusion: MemoInputs) -> None:
    failed = {row.item: row for row in diagnostic_checklist(with_exclusion)}
    passed = {row.item: row for row in diagnostic_checklist(clean)}
    assert failed["balance"].status == "fail" and IMBALANCED in failed["balance"].note
    assert passed["balance"].status == "pass"
    assert failed["caveats"].status == "fail" and passed["caveats"].status == "pass"
    assert passed["unobserved confounding"].status == "by design"
    assert passed["estimand stated"].status == "pass"
    assert passed["several estimators compared"].status == "pass"
    assert "| balance | fail |" in _sections(decision_memo_markdown(with_exclusion))["Diagnostic checklist"]


def test_estimators_that_disagree_fail_the_comparison_row(clean: MemoInputs) -> None:
    primary = clean.primary
    assert primary is not None
    shifted = tuple(
        e if e.method == primary.method else replace(e, estimate=e.estimate + 10 * primary.std_error)
        for e in clean.latest_estimates
    )
    inputs = replace(clean, latest_estimates=shifted)
    row = {r.item: r for r in diagnostic_checklist(inputs)}["several estimators compared"]
    assert row.status == "fail" and "aipw" in row.note


def test_observational_design_states_unobserved_confounding_as_an_assumption() -> None:
    stream = simulate_outreach_stream(rng=np.random.default_rng(2), n_batches=2, n_per_batch=1500)
    covariates = list(stream.covariates)
    estimates = [
        estimate_all(b, treatment="outreach", outcome="churn", covariates=covariates, methods=METHODS)
        for b in stream.batches
    ]
    result = causal_kalman(
        [e["aipw"].estimate for e in estimates],
        [e["aipw"].std_error for e in estimates],
        labels=stream.labels,
    )
    inputs = MemoInputs(
        study="retention_outreach",
        result=result,
        design=DesignSummary(kind="observational", adjustment_set=covariates),
        latest_estimates=tuple(estimates[-1].values()),
        primary_estimator="aipw",
        desired_direction="decrease",
    )
    rows = {row.item: row for row in diagnostic_checklist(inputs)}
    assert rows["unobserved confounding"].status == "assumption"
    assert rows["estimand stated"].status == "fail"
    markdown = decision_memo_markdown(inputs)
    assert "The estimand was not stated" in _sections(markdown)["Estimand and design"]
    naive_gap = estimates[-1]["difference_in_means"].estimate - estimates[-1]["aipw"].estimate
    assert f"Naive difference minus primary estimate: {inputs.scale.effect(naive_gap)}," in markdown


def test_numbers_in_the_memo_are_the_results_final_posterior(clean: MemoInputs) -> None:
    result = clean.result
    decimals = clean.scale.decimals
    assert result.final_sd / 10 >= 10.0**-decimals > result.final_sd / 100  # two significant digits
    evidence = _sections(decision_memo_markdown(clean))["Evidence"]
    found = re.search(
        r"the effect on order value has posterior mean ([-+]?[\d.]+) outcome units, posterior sd ([\d.]+) "
        r"outcome units, 95% credible interval \[(-?[\d.]+), (-?[\d.]+)\] outcome units",
        evidence,
    )
    assert found is not None
    shown = [float(x) for x in found.groups()]
    expected = [result.final_mean, result.final_sd, *result.final_ci]
    assert shown == pytest.approx(expected, abs=0.5 * 10.0**-decimals)
    assert math.isclose(result.level, 0.95)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs


def test_html_is_a_complete_page_that_escapes_hostile_strings(clean: MemoInputs) -> None:
    hostile = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
    verdicts = dict(clean.verdicts)
    latest = clean.result.labels[-1]
    verdicts[latest] = (
        *verdicts[latest],
        Verdict.undefined("custom", threshold=None, rule="r", reason=hostile),
    )
    inputs = replace(clean, card=_card(business_question=hostile), verdicts=verdicts)
    page = decision_memo_html(inputs)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    parser = _Tags()
    parser.feed(page)
    assert {"html", "head", "title", "body", "h1", "section", "table"} <= set(parser.tags)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert parser.attributes == [("lang", "en"), ("charset", "utf-8"), *parser.attributes[2:]]
    assert all(name == "class" for name, _ in parser.attributes[2:])
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img" in page
    assert "http" not in page  # no external resource
    markdown = decision_memo_markdown(inputs)
    assert "\\<script>" in markdown
    assert re.findall(r"(?<!\\)<", markdown) == []  # every "<" is escaped, so no raw HTML


def test_a_memo_without_a_card_says_the_estimand_was_not_stated(clean: MemoInputs) -> None:
    inputs = replace(clean, card=None)
    sections = _sections(decision_memo_markdown(inputs))
    assert "questions were not stated" in sections["Question"]
    assert "The estimand was not stated" in sections["Estimand and design"]
    assert "| estimand stated | fail |" in sections["Diagnostic checklist"]


def test_verdicts_from_a_tidy_table() -> None:
    frame = pd.DataFrame(
        {
            "partition_key": ["2025-01", "2025-01", "2025-02"],
            "check_name": [
                "check_batch_effect_balance",
                "check_propensity_model_overlap",
                "check_batch_effect_balance",
            ],
            "status": ["pass", "undefined", "fail"],
            "value": [0.04, np.nan, 0.3],
            "threshold": [0.1, 0.1, 0.1],
            "rule": ["max |SMD| <= 0.1"] * 3,
            "reason": ["", "one arm only", ""],
        }
    )
    verdicts = verdicts_from_frame(frame)
    assert list(verdicts) == ["2025-01", "2025-02"]
    assert verdicts["2025-01"][1] == Verdict(
        "check_propensity_model_overlap", None, 0.1, "max |SMD| <= 0.1", "undefined", "one arm only"
    )
    assert verdicts["2025-02"][0].failed and verdicts["2025-02"][0].value == pytest.approx(0.3)


def test_exclusions_must_match_the_results_excluded_batches(clean: MemoInputs) -> None:
    with pytest.raises(ValueError, match="did not exclude"):
        replace(clean, exclusions={clean.result.labels[0]: ("balance",)})


def test_a_drifting_posterior_is_provisional_and_names_the_failed_posterior_check() -> None:
    # A steadily rising effect filtered with zero process variance: the innovations are one-sided.
    result = causal_kalman([0.1 * i for i in range(1, 9)], [0.05] * 8, process_var=0.0)
    inputs = MemoInputs(
        study="drift",
        result=result,
        design=DesignSummary(kind="randomized"),
        latest_estimates=(),
        primary_estimator="difference_in_means",
    )
    assert inputs.status == "provisional"
    sections = _sections(decision_memo_markdown(inputs))
    assert "Check of the posterior failed: Persistent one-sided surprises" in sections[SECTIONS[0]]
    assert sections["Recommendation"].startswith("Fix or verify first")
    assert "revisit its process variance" in sections["Recommendation"]


def test_no_admitted_batch_means_no_evidence_and_no_decision() -> None:
    result = causal_kalman(
        [0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], excluded=[True, True], prior_mean=0.0, prior_var=1.0
    )
    inputs = MemoInputs(
        study="empty",
        result=result,
        design=DesignSummary(kind="observational"),
        latest_estimates=(),
        primary_estimator="aipw",
        exclusions={"m1": ("check_batch_effect_balance",), "m2": ("check_propensity_model_overlap",)},
    )
    markdown = decision_memo_markdown(inputs)
    first = _sections(markdown)[SECTIONS[0]]
    assert first.startswith("**Status: no evidence.**")
    assert "Batch m2: excluded from the posterior: Propensity overlap failed" in first
    assert _sections(markdown)["Recommendation"].startswith("No decision")
    assert OVERCLAIMS.findall(markdown) == []


def test_the_method_shortlist_is_shown_with_its_reasons(clean: MemoInputs) -> None:
    shortlist = pd.DataFrame(
        {
            "method": ["difference_in_means", "instrumental_variables"],
            "valid": [True, False],
            "reason": ["randomized assignment", "no instrument in the graph"],
            "extra": [1, 2],
        }
    )
    inputs = replace(clean, design=replace(clean.design, method_shortlist=shortlist))
    design = _sections(decision_memo_markdown(inputs))["Estimand and design"]
    assert "| difference_in_means | yes | randomized assignment |" in design
    assert "| instrumental_variables | no | no instrument in the graph |" in design
    with pytest.raises(ValueError, match="reason"):
        DesignSummary(kind="randomized", method_shortlist=shortlist.drop(columns="reason"))


# --- The always-valid interval decides; the status recovers (issue 13, items 2 and 4) ---


def _monthly(
    estimates: list[float] | np.ndarray,
    *,
    excluded: list[bool] | None = None,
    se: float = 0.05,
    **changes: object,
) -> MemoInputs:
    n = len(estimates)
    labels = [f"2025-{i + 1:02d}-01" for i in range(n)]
    flags = excluded or [False] * n
    result = causal_kalman(
        estimates,
        [se] * n,
        labels=labels,
        excluded=flags,
        exclusion_reasons=["failed sample_ratio_mismatch" if f else "" for f in flags],
        process_var=0.0,
        prior_mean=0.0,
        prior_var=1.0,
    )
    fields: dict[str, object] = {
        "study": "monthly",
        "result": result,
        "design": DesignSummary(kind="randomized"),
        "latest_estimates": (),
        "primary_estimator": "difference_in_means",
        "desired_direction": "increase",
    }
    return MemoInputs(**(fields | changes))  # type: ignore[arg-type]


def _clear_effect(n: int = 12) -> np.ndarray:
    return 0.3 + 0.05 * np.random.default_rng(7).standard_normal(n)


def test_acknowledging_an_excluded_batch_recovers_the_status(with_exclusion: MemoInputs) -> None:
    assert with_exclusion.status == "provisional" and with_exclusion.decision == "fix first"
    acknowledged = replace(with_exclusion, acknowledged_exclusions={IMBALANCED: "  assignment bug, fixed  "})
    assert acknowledged.status == "pass" and acknowledged.decision == "act"
    sections = _sections(decision_memo_markdown(acknowledged))
    first = sections[SECTIONS[0]]
    assert first.startswith("**Status: pass.**")
    assert f"Batch {IMBALANCED}: excluded from the posterior: Covariate balance (" in first
    assert "acknowledged: assignment bug, fixed." in first
    assert "(1 excluded, 1 of them acknowledged)" in first
    assert sections["Recommendation"].startswith("Act: adopt new checkout.")
    caveats = {row.item: row for row in diagnostic_checklist(acknowledged)}["caveats"]
    assert caveats.status == "pass" and "assignment bug" in caveats.note


def test_a_failed_latest_batch_is_provisional_until_acknowledged() -> None:
    flags = [False] * 11 + [True]
    inputs = _monthly(_clear_effect(), excluded=flags)
    assert inputs.status == "provisional"
    assert inputs.status_reasons() == ("the latest batch 2025-12-01 was excluded and is not acknowledged",)
    first = _sections(decision_memo_markdown(inputs))[SECTIONS[0]]
    assert "Provisional because the latest batch 2025-12-01 was excluded" in first
    assert (
        "Batch 2025-12-01: excluded from the posterior: failed sample_ratio_mismatch; not acknowledged."
        in first
    )
    assert (
        _monthly(_clear_effect(), excluded=flags, acknowledged_exclusions={"2025-12-01": "outage"}).status
        == "pass"
    )


@pytest.mark.parametrize(
    ("excluded_months", "share", "status"),
    [
        ((3,), 0.1, "pass"),  # 1 of 12 (8%) unacknowledged: named, not provisional
        ((3, 7), 0.1, "provisional"),  # 2 of 12 (17%) > 10%
        ((3, 7), 0.2, "pass"),  # the share is a parameter
        ((3,), 0.0, "provisional"),  # share 0: every unacknowledged exclusion holds the status back
    ],
)
def test_older_exclusions_hold_the_status_back_only_above_a_share(
    excluded_months: tuple[int, ...], share: float, status: str
) -> None:
    flags = [i + 1 in excluded_months for i in range(12)]
    inputs = _monthly(_clear_effect(), excluded=flags, max_unacknowledged_share=share)
    assert inputs.status == status
    first = _sections(decision_memo_markdown(inputs))[SECTIONS[0]]
    for month in excluded_months:
        assert (
            f"Batch 2025-{month:02d}-01: excluded from the posterior: failed sample_ratio_mismatch" in first
        )
    assert f"more than {share:.0%} of the batches are excluded without acknowledgement" in first


def test_a_credible_interval_that_excludes_zero_by_peeking_is_not_a_decision() -> None:
    # Twelve looks whose fused estimate sits about 2.1 standard errors above 0.
    noise = 0.05 * np.random.default_rng(3).standard_normal(12)
    estimates = noise - noise.mean() + 0.03
    inputs = _monthly(estimates)
    assert inputs.status == "pass"
    assert inputs.result.final_ci[0] > 0  # the posterior alone would have said "act"
    lower, upper = inputs.decision_interval.conf_int()
    assert lower < 0 < upper and inputs.decision == "inconclusive"
    markdown = decision_memo_markdown(inputs)
    recommendation = _sections(markdown)["Recommendation"]
    assert recommendation.startswith("The evidence is inconclusive: the always-valid 95% interval")
    assert "not corrected for reading the memo after every batch" in recommendation
    assert OVERCLAIMS.findall(markdown) == []


def test_the_memo_says_which_interval_is_which_with_the_decision_intervals_numbers() -> None:
    inputs = _monthly(_clear_effect())
    evidence = _sections(decision_memo_markdown(inputs))["Evidence"]
    lower, upper = inputs.decision_interval.conf_int()
    d = inputs.scale.decimals
    assert "### Which interval is which" in evidence
    assert "| interval | range (outcome units) |" in evidence
    assert f"| always-valid 95% interval (confidence sequence) | [{lower:.{d}f}, {upper:.{d}f}] |" in evidence
    assert "| 95% credible interval (posterior) |" in evidence
    assert "decide: the recommendation reads this interval" in evidence
    assert inputs.decision_interval.promise in evidence
    assert upper - lower > inputs.result.final_ci[1] - inputs.result.final_ci[0]  # the price of peeking


def test_a_supplied_sequence_is_the_one_the_decision_reads() -> None:
    inputs = _monthly(_clear_effect())
    assert inputs.decision == "act"
    n = inputs.result.n_batches
    covariance = 0.05**2 * (0.99 * np.ones((n, n)) + 0.01 * np.eye(n))  # nearly the same units every month
    correlated = confidence_sequence(
        inputs.result.estimates, covariance=covariance, labels=inputs.result.labels, planned_looks=n
    )
    assert correlated.correlated
    supplied = replace(inputs, always_valid=correlated)
    assert supplied.decision_interval is correlated
    assert "with the supplied covariance between batches" in decision_memo_markdown(supplied)
    with pytest.raises(ValueError, match="same labels"):
        replace(inputs, always_valid=confidence_sequence([0.1], [0.1]))


def test_acknowledgements_need_a_reason_and_unmatched_ones_are_shown_not_applied() -> None:
    with pytest.raises(ValueError, match="need a reason"):
        _monthly(_clear_effect(), acknowledged_exclusions={"2025-02-01": " "})
    inputs = _monthly(_clear_effect(), acknowledged_exclusions={"2025-02-01": "looked fine"})
    assert inputs.status == "pass" and inputs.unmatched_acknowledgements() == ("2025-02-01",)
    first = _sections(decision_memo_markdown(inputs))[SECTIONS[0]]
    assert "Acknowledgement of batch 2025-02-01 not applied: the batch was not excluded." in first
    with pytest.raises(ValueError, match="max_unacknowledged_share"):
        _monthly(_clear_effect(), max_unacknowledged_share=1.0)


@pytest.mark.parametrize(
    ("status", "lower", "upper", "desired", "decision"),
    [
        ("pass", 0.1, 0.3, "increase", "act"),
        ("pass", -0.3, -0.1, "decrease", "act"),
        ("pass", 0.1, 0.3, "decrease", "do not adopt"),
        ("pass", 0.1, 0.3, None, "act on the sign"),
        ("pass", -0.1, 0.3, "increase", "inconclusive"),
        ("pass", -math.inf, math.inf, "increase", "inconclusive"),
        ("pass", math.nan, math.nan, "increase", "inconclusive"),
        ("provisional", 0.1, 0.3, "increase", "fix first"),
        ("no evidence", 0.1, 0.3, "increase", "no decision"),
    ],
)
def test_the_decision_rule(
    status: str, lower: float, upper: float, desired: str | None, decision: str
) -> None:
    assert decide(status=status, lower=lower, upper=upper, desired_direction=desired) == decision  # type: ignore[arg-type]


def test_a_status_other_than_pass_never_acts() -> None:
    for status in ("provisional", "no evidence"):
        for bounds in ((0.1, 0.3), (-0.3, -0.1), (-0.1, 0.1)):
            for desired in ("increase", "decrease", None):
                decision = decide(status=status, lower=bounds[0], upper=bounds[1], desired_direction=desired)  # type: ignore[arg-type]
                assert decision in ("fix first", "no decision")
    with pytest.raises(ValueError, match="status"):
        decide(status="fine", lower=0.1, upper=0.2, desired_direction=None)  # type: ignore[arg-type]


def test_the_memo_says_whether_the_effect_wears_off_with_the_steady_state_effect() -> None:
    decaying = [0.30 - 0.2 * i / 23 for i in range(24)]
    result = causal_kalman(decaying, [0.02] * 24, process_var=0.0)
    trend = trend_test_of(result)
    assert trend.direction == "novelty"
    inputs = MemoInputs(
        study="wearing_off",
        result=result,
        design=DesignSummary(kind="randomized"),
        latest_estimates=(),
        primary_estimator="difference_in_means",
    )
    assert "Does the effect wear off?" not in decision_memo_markdown(inputs)
    text = decision_memo_markdown(replace(inputs, trend=trend))
    assert "Does the effect wear off?" in text
    assert "novelty effect" in text and "Steady-state effect" in text


def test_a_warning_repeated_on_many_admitted_batches_is_one_line_of_the_status() -> None:
    result = causal_kalman(
        [0.5] * 6, [0.1] * 6, process_var=0.0, labels=[f"2025-0{m}-01" for m in range(1, 7)]
    )
    warning = Verdict.evaluate("returning_units", value=0.3, threshold=0.05, rule="r", passed=False)
    inputs = MemoInputs(
        study="panel",
        result=result,
        design=DesignSummary(kind="randomized"),
        latest_estimates=(),
        primary_estimator="difference_in_means",
        verdicts={label: (warning,) for label in result.labels[1:]},
    )
    status = _sections(decision_memo_markdown(inputs))[SECTIONS[0]]
    assert "Warning on 5 batches (2025-02-01 to 2025-06-01): Returning units" in status
    assert "Batch 2025-03-01" not in status
