"""The guardrails study, fast version: the Bonferroni rule keeps every promise, and the correction matters."""

from __future__ import annotations

from simulations.guardrails import run


def test_the_guardrail_rule_keeps_its_family_wise_promises() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    assert len(targeted) == 3  # false "no harm" at the boundary, joint coverage, false "harm detected"
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    boundary = table[table["scenario"].str.startswith("every guardrail at the harm boundary")]
    adjusted, unadjusted = boundary["value"].to_numpy()
    assert adjusted < unadjusted, (
        boundary.to_string()
    )  # unadjusted 95% intervals declare "no harm" more often
