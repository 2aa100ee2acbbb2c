"""The joint pre-trend test of an event study: are the leads (placebo effects before adoption) all 0.

Model: under parallel trends (and no anticipation) every lead ``beta_k``, ``k < 0``, is zero; with
``b`` the ``K`` lead estimates and ``V`` their unit-clustered covariance the Wald statistic is
``W = b' V^{-1} b ~ chi2(K)`` (or ``W / K ~ F(K, G - 1)``). The verdict fails when its p-value is
below the study's level, so the pipeline can keep post-adoption batches out of the posterior.
A pass is not proof of parallel trends: the test has low power against small or smooth
violations (Roth 2022), so its measured power is reported beside its level (simulations/did.py).

Example
-------
>>> import numpy as np
>>> from assimilate.estimators.did_results import EventStudy
>>> study = EventStudy(event_times=(-3, -2, 0), estimate=np.array([0.05, -0.02, 1.0]),
...                    covariance=np.diag([0.01, 0.01, 0.02]), df=199, method="example", reference=-1)
>>> verdict = pre_trend_test(study)
>>> verdict.status, verdict.leads, round(verdict.statistic, 2)
('pass', (-3, -2), 0.29)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import linalg, stats

from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.verdict import Status, Verdict
from assimilate.estimators.did_results import EventStudy

Distribution = Literal["chi2", "f"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("chi2", "f")
"""``W ~ chi2(K)``, or ``W / K ~ F(K, df)`` with the study's ``df = G - 1`` (fewer clusters)."""
NAME = "pre_trends"


@dataclass(frozen=True)
class PreTrendVerdict(Verdict):
    """A :class:`~assimilate.diagnostics.verdict.Verdict` (``value``: the p-value) with the test's numbers.

    Parameters
    ----------
    statistic : float or None
        ``W = b' V^{-1} b`` (None when undefined).
    df : int
        ``K``: the leads tested.
    denominator_df : int or None
        ``G - 1`` for the F version, None for chi-square.
    distribution : {"chi2", "f"}
        The reference distribution.
    leads : tuple of int
        The lead event times tested.
    lead_estimates, lead_std_errors : tuple of float
        Their estimates and standard errors, for the check's metadata and plot.
    """

    statistic: float | None = None
    df: int = 0
    denominator_df: int | None = None
    distribution: Distribution = "chi2"
    leads: tuple[int, ...] = ()
    lead_estimates: tuple[float, ...] = ()
    lead_std_errors: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: the verdict's fields and the test's."""
        return {
            **super().to_dict(),
            "statistic": self.statistic,
            "df": self.df,
            "denominator_df": self.denominator_df,
            "distribution": self.distribution,
            "leads": list(self.leads),
            "lead_estimates": list(self.lead_estimates),
            "lead_std_errors": list(self.lead_std_errors),
        }


def pre_trend_test(
    study: EventStudy,
    *,
    alpha: float = 0.05,
    leads: Sequence[int] | None = None,
    distribution: Distribution = "chi2",
) -> PreTrendVerdict:
    """Joint Wald test that the leads of an event study are zero, as a gate verdict.

    Parameters
    ----------
    study : EventStudy
        From :func:`assimilate.estimators.did.event_study` or
        :meth:`assimilate.estimators.did_staggered.GroupTimeATT.event_time`.
    alpha : float
        The test's level: the verdict fails when the p-value is below it.
    leads : sequence of int, optional
        The lead event times to test (default: every estimated ``k < 0``).
    distribution : {"chi2", "f"}
        ``W ~ chi2(K)`` (default), or ``W / K ~ F(K, G - 1)``, more conservative with few clusters.

    Returns
    -------
    PreTrendVerdict
        ``name="pre_trends"``, ``value`` the p-value, ``threshold`` ``alpha``; ``pass`` when the
        p-value is at least ``alpha``; ``undefined`` (with the reason) when there is no lead or
        the leads' covariance is singular.
    """
    level = check_alpha(alpha)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    chosen = tuple(study.leads if leads is None else (int(k) for k in leads))
    late = [k for k in chosen if k >= 0]
    if late:
        raise ValueError(f"leads must be event times before adoption (< 0), got {late}")
    rule = f"joint Wald test that the leads are 0: p-value >= {level:g}"
    if not chosen:
        reason = "no lead to test: the study has no pre-adoption period besides its reference"
        return PreTrendVerdict(NAME, None, level, rule, "undefined", reason, distribution=distribution)
    if distribution == "f" and study.df is None:
        raise ValueError("distribution='f' needs the study's degrees of freedom (df is None)")
    estimates, covariance = study.select(chosen)
    numbers: dict[str, Any] = {
        "df": len(chosen),
        "denominator_df": study.df if distribution == "f" else None,
        "distribution": distribution,
        "leads": chosen,
        "lead_estimates": tuple(float(v) for v in estimates),
        "lead_std_errors": tuple(float(v) for v in np.sqrt(np.diag(covariance))),
    }
    if np.linalg.matrix_rank(covariance) < len(chosen):
        reason = f"the covariance of the {len(chosen)} leads is singular (too few clusters or units)"
        return PreTrendVerdict(NAME, None, level, rule, "undefined", reason, **numbers)
    statistic = float(estimates @ linalg.solve(covariance, estimates, assume_a="pos"))
    if distribution == "chi2":
        p_value = float(stats.chi2.sf(statistic, len(chosen)))
        shown = f"chi2({len(chosen)}) = {statistic:.4g}"
    else:
        assert study.df is not None
        p_value = float(stats.f.sf(statistic / len(chosen), len(chosen), study.df))
        shown = f"F({len(chosen)}, {study.df}) = {statistic / len(chosen):.4g}"
    reason = f"{shown}, p-value {p_value:.4g} over leads {list(chosen)}"
    status: Status = "pass" if p_value >= level else "fail"
    if not np.isfinite(statistic):
        status, reason = "fail", "statistic is not finite"
    return PreTrendVerdict(NAME, p_value, level, rule, status, reason, statistic=statistic, **numbers)
