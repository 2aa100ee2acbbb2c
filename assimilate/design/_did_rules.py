"""The rules of a difference-in-differences plan (``design.kind: did``): one ``key: rule`` line per problem.

Callaway & Sant'Anna's unconditional estimator compares each adopting cohort's change in the mean
outcome with the comparison units' change, clustered on the unit: so no covariate adjustment, no
other cluster column or standard error, one row per unit and period, no refuters (they refit a
unit-level estimator of a cross-section), and a single-adoption study names the 0/1 group column
of its adopting units.

Example
-------
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan.model_construct(
...     unit_id="region", treatment="live", outcome="sales", covariates=(), categorical={},
...     post_treatment=(), cluster=None, duplicate_units="reject", standard_errors=None,
...     estimators=("callaway_santanna",), custom_estimators={},
...     design={"kind": "did", "first_treated": "2025-04-01"},
... )
>>> print(did_problems(plan.model_copy(update={"design": DifferenceInDifferencesDesign(
...     kind="did", first_treated="2025-04-01")}))[0])
design.group: a single adoption (first_treated: 2025-04-01) needs group: the 0/1 column of the units that adopt then
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assimilate.design.designs import DifferenceInDifferencesDesign  # noqa: F401  (the doctest's)

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan


def did_problems(plan: AnalysisPlan) -> list[str]:
    """Every broken rule of a did plan (none for another design)."""
    design = plan.design
    if design.kind != "did":
        return []
    problems: list[str] = []
    label = design.adoption_label
    if label is not None and design.group is None:
        problems.append(
            f"design.group: a single adoption (first_treated: {label}) needs group: the 0/1 column of the "
            "units that adopt then"
        )
    if label is None and design.group is not None:
        problems.append(
            f"design.group: first_treated {design.first_treated!r} is a column of each unit's first treated "
            "batch, which already says who adopts; leave group out (it is for a single adoption date)"
        )
    taken = {plan.unit_id: "unit_id", plan.treatment: "treatment", plan.outcome: "outcome"}
    taken |= {c: "a covariate" for c in plan.model_columns} | {
        c: "post_treatment" for c in plan.post_treatment
    }
    if plan.cluster is not None:
        taken[plan.cluster] = "cluster"
    for key, column in (("design.first_treated", design.cohort_column), ("design.group", design.group)):
        if column is not None and column in taken:
            problems.append(f"{key}: column {column!r} is already the {taken[column]}")
    if design.cohort_column is not None and design.cohort_column == design.group:
        problems.append(f"design.group: column {design.group!r} is also design.first_treated")
    if plan.model_columns:
        problems.append(
            "covariates: the callaway_santanna estimator is unconditional (parallel trends without "
            "covariates); leave covariates and categorical out of a did study"
        )
    if plan.cluster is not None or plan.duplicate_units != "reject":
        problems.append(
            "cluster: a did study clusters on the unit (unit_id) across periods; leave cluster out and "
            "duplicate_units at reject (one row per unit and period)"
        )
    if plan.standard_errors not in (None, "CR1"):
        problems.append(
            f"standard_errors: {plan.standard_errors} is not offered by callaway_santanna: its SE is CR1 on "
            "the unit, from the influence functions (leave standard_errors out)"
        )
    if getattr(plan, "refuters", None) is not None:
        problems.append(
            "refuters: they refit a unit-level estimator of one cross-section; a did study's batches are "
            "periods of a panel (its placebo check is the pre-trend test)"
        )
    problems.extend(
        f"estimators: {name!r} (custom_estimators) cannot run under design.kind 'did': a custom estimator "
        "receives one batch, not the panel; the design runs callaway_santanna"
        for name in plan.estimators
        if name in plan.custom_estimators
    )
    return problems
