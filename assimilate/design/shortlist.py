"""Method shortlist: which effect estimators a study's design supports, and why others do not.

Each candidate method needs an identification strategy the design must supply: randomization or a
valid backdoor adjustment set (difference in means, regression adjustment, Lin's interacted
regression, IPW, AIPW), a panel (difference in differences), an instrument (instrumental
variables) or a running variable with a cutoff (regression discontinuity).

Example
-------
>>> table = method_shortlist(None, design="randomized", covariates=["x"])
>>> table.loc[table["valid"], "method"].tolist()
['difference_in_means', 'regression_adjustment', 'lin_interacted', 'ipw', 'aipw']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import pandas as pd

from assimilate._validation import check_choice
from assimilate.design.dag import CausalDAG

DesignKind = Literal["randomized", "observational"]
METHODS: tuple[str, ...] = (
    "difference_in_means",
    "regression_adjustment",
    "lin_interacted",
    "ipw",
    "aipw",
    "difference_in_differences",
    "instrumental_variables",
    "regression_discontinuity",
)
_ADJUSTMENT_METHODS = ("regression_adjustment", "lin_interacted", "ipw", "aipw")


def method_shortlist(
    dag: CausalDAG | None,
    *,
    design: DesignKind,
    covariates: Sequence[str] = (),
    observed: Iterable[str] | None = None,
    panel: bool = False,
    running_variable: str | None = None,
) -> pd.DataFrame:
    """Tabulate which estimators are valid for a design, with the reason for each verdict.

    Parameters
    ----------
    dag : CausalDAG or None
        The study's causal graph; None when the study declares none (then the covariates are
        assumed, not shown, to block every backdoor path of an observational design).
    design : {"randomized", "observational"}
        Whether the study assigns the treatment at random.
    covariates : sequence of str
        The adjustment set the study's models use.
    observed : iterable of str, optional
        Variables measured in the data, used to propose a valid set when ``covariates`` is not
        one; by default the covariates.
    panel : bool
        True when the same units are observed before and after treatment starts.
    running_variable : str, optional
        The score whose cutoff assigns the treatment, if any.

    Returns
    -------
    DataFrame
        One row per method in :data:`METHODS`; columns ``method``, ``valid``, ``reason``.
    """
    check_choice("design", design, ("randomized", "observational"))
    covariates = tuple(covariates)
    rows = [
        ("difference_in_means", *_unadjusted(dag, design)),
        *((name, *_adjusted(dag, design, covariates, observed)) for name in _ADJUSTMENT_METHODS),
        ("difference_in_differences", *_did(panel)),
        ("instrumental_variables", *_iv(dag)),
        ("regression_discontinuity", *_rdd(dag, running_variable)),
    ]
    return pd.DataFrame(rows, columns=["method", "valid", "reason"]).astype({"valid": bool})


def _unadjusted(dag: CausalDAG | None, design: DesignKind) -> tuple[bool, str]:
    if design == "randomized":
        if dag is not None and dag.parents(dag.treatment):
            return False, (
                f"the design is randomized but the causal graph gives the treatment causes "
                f"{list(dag.parents(dag.treatment))}"
            )
        return True, "randomization leaves no backdoor path between treatment and outcome"
    if dag is None:
        return False, "observational design with no causal graph: confounding cannot be ruled out"
    check = dag.check_adjustment(())
    if check.valid:
        return True, "the causal graph has no backdoor path between treatment and outcome"
    return False, f"confounded: {check.reason}"


def _adjusted(
    dag: CausalDAG | None, design: DesignKind, covariates: tuple[str, ...], observed: Iterable[str] | None
) -> tuple[bool, str]:
    if not covariates:
        return False, "no covariates declared: nothing to adjust for (it would be the difference in means)"
    if dag is None:
        if design == "randomized":
            return True, "randomized: covariates only add precision"
        return True, "assumes the covariates block every backdoor path (no causal graph declared to check it)"
    check = dag.check_adjustment(covariates)
    if check.valid:
        if design == "randomized":
            return True, "randomized: covariates only add precision"
        return True, (
            f"the covariates are a valid adjustment set: they block every backdoor path from "
            f"{dag.treatment!r} to {dag.outcome!r} and none descends from the treatment"
        )
    proposal = dag.adjustment_set(covariates if observed is None else observed)
    if proposal is None:
        hint = "; no valid adjustment set among the observed variables"
    else:
        hint = (
            f"; a valid adjustment set is {list(proposal)}"
            if proposal
            else "; adjusting for nothing is valid"
        )
    return False, f"the covariates are not a valid adjustment set: {check.reason}{hint}"


def _did(panel: bool) -> tuple[bool, str]:
    if not panel:
        return False, (
            "no panel: difference in differences needs the same units' outcomes before and after "
            "treatment starts"
        )
    return True, "panel data: valid if untreated outcomes would have followed parallel trends"


def _iv(dag: CausalDAG | None) -> tuple[bool, str]:
    if dag is None or not dag.instruments:
        return False, "no instrument declared in the causal graph"
    return True, (
        f"instrument {list(dag.instruments)} causes the treatment and reaches the outcome only "
        "through it; needs a strong first stage"
    )


def _rdd(dag: CausalDAG | None, running_variable: str | None) -> tuple[bool, str]:
    if running_variable is None:
        return False, "no running variable: the treatment is not assigned by a cutoff on a score"
    if dag is not None and running_variable in dag.descendants_of_treatment:
        return False, f"the running variable {running_variable!r} is a descendant of the treatment"
    return True, f"cutoff on {running_variable!r}: valid if the outcome is continuous at the cutoff"
