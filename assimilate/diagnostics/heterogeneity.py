"""Does a segment's effect differ from the rest beyond chance? One test per segment, adjusted for their number.

For segment ``s`` with effects ``theta`` (estimates, or a posterior) of covariance ``V``, the contrast
``c_s' theta = theta_s - sum_{j != s} w_j theta_j / sum_{j != s} w_j`` with ``w_j = 1 / V_jj`` (the
segment minus the precision-weighted mean of the others) has ``z_s = c_s' theta / sqrt(c_s' V c_s)``
and two-sided p-value ``p_s``. The ``S`` p-values are adjusted by Holm's step-down rule (the chance
that any segment is flagged when none differs is at most ``alpha``, under any dependence) or by
Benjamini-Hochberg (the expected share of false flags among the flags is at most ``alpha``). A
flagged segment fails the verdict: a warning that the effect is not the same for everyone.

Example
-------
>>> from assimilate.estimators import EffectEstimate
>>> from assimilate.estimators.segments import SegmentEffect, SegmentEffects
>>> fit = lambda e: EffectEstimate(e, 0.1, 100, 100, "difference_in_means", "welch")
>>> segments = [SegmentEffect(name, 100, 100, fit(effect))
...             for name, effect in zip("abcde", [0.5, 0.45, 0.55, 0.5, 1.2])]
>>> effects = SegmentEffects("region", "categorical", "difference_in_means", "ATE", tuple(segments))
>>> check = segment_differences(effects)
>>> check.verdict.status, check.flagged
('fail', ('e',))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from assimilate._frozen import FrozenDict
from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.calibration import GateVerdict, stating_rate
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.segments import SegmentEffects
from assimilate.filters.segments import SegmentPosterior

FloatArray = NDArray[np.float64]
Correction = Literal["holm", "benjamini_hochberg"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "benjamini_hochberg")
CHECK_NAME = "segment_differs_from_rest"
_WORDS = {"holm": "Holm", "benjamini_hochberg": "Benjamini-Hochberg"}


def adjust_p_values(p_values: ArrayLike, *, correction: Correction = "holm") -> FloatArray:
    """Multiplicity-adjusted p-values: reject ``j`` at level ``alpha`` when ``adjusted_j < alpha``.

    Parameters
    ----------
    p_values : array_like
        One p-value per hypothesis.
    correction : {"holm", "benjamini_hochberg"}
        Holm (1979) step-down, controlling the family-wise error rate; Benjamini & Hochberg (1995)
        step-up, controlling the false discovery rate.

    Returns
    -------
    ndarray
        Adjusted p-values in the input order, each in ``[p_j, 1]``.
    """
    check_choice("correction", correction, CORRECTIONS)
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if correction == "holm":
        stepped = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        stepped = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


@dataclass(frozen=True)
class SegmentDifferences:
    """Each segment's difference from the rest, its test, and the verdict across segments.

    Attributes
    ----------
    source : str
        ``"batch"`` (one batch's estimates) or ``"posterior"`` (the fused belief at one batch).
    segments : tuple of str
        The segments tested (those with an estimate).
    difference, std_error, z, p_value, adjusted_p_value : tuple of float
        Per tested segment: its effect minus the precision-weighted mean of the others, the SE of
        that contrast, their ratio (0 for a contrast fixed at 0), the two-sided p-value and its
        adjustment.
    correction : str
        ``"holm"`` or ``"benjamini_hochberg"``.
    alpha : float
        The level; the verdict states it as its false-alarm rate.
    verdict : GateVerdict
        Fails when a segment's adjusted p-value is below ``alpha``; undefined with fewer than two
        segments tested.
    not_assessed : Mapping[str, str]
        Segments left out, each with its reason.
    """

    source: str
    segments: tuple[str, ...]
    difference: tuple[float, ...]
    std_error: tuple[float, ...]
    z: tuple[float, ...]
    p_value: tuple[float, ...]
    adjusted_p_value: tuple[float, ...]
    correction: str
    alpha: float
    verdict: GateVerdict
    not_assessed: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "not_assessed", FrozenDict(self.not_assessed))

    @property
    def flagged(self) -> tuple[str, ...]:
        """The segments whose adjusted p-value is below ``alpha``."""
        return tuple(s for s, p in zip(self.segments, self.adjusted_p_value, strict=True) if p < self.alpha)

    def to_frame(self) -> pd.DataFrame:
        """One row per tested segment: difference, std_error, z, p_value, adjusted_p_value, differs."""
        table = pd.DataFrame(
            {
                "segment": list(self.segments),
                "difference": list(self.difference),
                "std_error": list(self.std_error),
                "z": list(self.z),
                "p_value": list(self.p_value),
                "adjusted_p_value": list(self.adjusted_p_value),
            }
        )
        return table.assign(
            differs=table["adjusted_p_value"] < self.alpha,
            correction=self.correction,
            alpha=self.alpha,
            source=self.source,
        )


def differences_from_rest(
    means: ArrayLike,
    covariance: ArrayLike,
    segments: Sequence[str],
    *,
    alpha: float = 0.05,
    correction: Correction = "holm",
    source: str = "batch",
    not_assessed: Mapping[str, str] | None = None,
) -> SegmentDifferences:
    """Test every segment against the rest (module docstring) and adjust across segments.

    Parameters
    ----------
    means : array_like
        ``S`` segment effects.
    covariance : array_like
        Their ``S x S`` covariance (diagonal for one batch's independent segments).
    segments : sequence of str
        The segments' names.
    alpha : float
        Level of the verdict.
    correction : {"holm", "benjamini_hochberg"}
        The multiplicity rule (:func:`adjust_p_values`).
    source : str
        What the effects are, for the report (``"batch"`` or ``"posterior"``).
    not_assessed : Mapping[str, str], optional
        Segments left out before the test, with their reasons (reported).

    Returns
    -------
    SegmentDifferences
    """
    check_alpha(alpha)
    check_choice("correction", correction, CORRECTIONS)
    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(covariance, dtype=np.float64)
    names = tuple(segments)
    if v.shape != (len(m), len(m)) or len(names) != len(m):
        raise ValueError(f"means ({len(m)}), covariance {v.shape} and segments ({len(names)}) must agree")
    skipped = dict(not_assessed or {})
    rule = f"{_WORDS[correction]}-adjusted p-value of 'the segment differs from the rest' >= {alpha:g} for every segment"
    if len(m) < 2:
        why = "; ".join(f"{k}: {r}" for k, r in skipped.items()) or "no other segment"
        reason = f"needs two segments with an estimate, got {len(m)} ({why})"
        verdict = stating_rate(
            Verdict.undefined(CHECK_NAME, threshold=alpha, rule=rule, reason=reason), alpha
        )
        return SegmentDifferences(source, names, (), (), (), (), (), correction, alpha, verdict, skipped)
    precision = 1.0 / np.diagonal(v)
    contrasts = np.eye(len(m))
    for s in range(len(m)):
        others = np.arange(len(m)) != s
        contrasts[s, others] = -precision[others] / precision[others].sum()
    difference = contrasts @ m
    std_error = np.sqrt(np.maximum(np.einsum("si,ij,sj->s", contrasts, v, contrasts), 0.0))
    # A contrast with no spread (complete pooling: tau^2 = 0) is exactly 0: no evidence of a difference.
    tiny = 1e-12 * float(np.sqrt(np.max(np.diagonal(v))))
    z = np.divide(difference, std_error, out=np.zeros(len(m)), where=std_error > tiny)
    p = 2.0 * special.ndtr(-np.abs(z))
    adjusted = adjust_p_values(p, correction=correction)
    flagged = np.flatnonzero(adjusted < alpha)
    if len(flagged):
        listed = ", ".join(
            f"{names[s]} ({difference[s]:+.4g}, SE {std_error[s]:.3g}, adjusted p {adjusted[s]:.3g})"
            for s in flagged
        )
        reason = f"{len(flagged)} of {len(m)} segments differ from the rest: {listed}"
    else:
        reason = f"no segment differs from the rest beyond chance (smallest adjusted p {adjusted.min():.3g} over {len(m)})"
    judged = Verdict.evaluate(
        CHECK_NAME,
        value=float(adjusted.min()),
        threshold=alpha,
        rule=rule,
        passed=not len(flagged),
        reason=reason,
    )
    return SegmentDifferences(
        source,
        names,
        tuple(float(x) for x in difference),
        tuple(float(x) for x in std_error),
        tuple(float(x) for x in z),
        tuple(float(x) for x in p),
        tuple(float(x) for x in adjusted),
        correction,
        alpha,
        stating_rate(judged, alpha),
        skipped,
    )


def segment_differences(
    effects: SegmentEffects, *, alpha: float = 0.05, correction: Correction = "holm"
) -> SegmentDifferences:
    """One batch: each assessed segment's estimate against the others' (independent: no shared rows).

    Parameters
    ----------
    effects : SegmentEffects
        The batch's segment effects; segments not assessed are left out with their reasons.
    alpha : float
        Level of the verdict.
    correction : {"holm", "benjamini_hochberg"}
        The multiplicity rule.

    Returns
    -------
    SegmentDifferences
    """
    fits = [(s.segment, s.estimate) for s in effects.segments if s.estimate is not None]
    skipped = {s.segment: s.reason for s in effects.segments if not s.assessed}
    means = [f.estimate for _, f in fits]
    variance = np.diag([f.std_error**2 for _, f in fits])
    return differences_from_rest(
        means, variance, [name for name, _ in fits], alpha=alpha, correction=correction, not_assessed=skipped
    )


def posterior_segment_differences(
    posterior: SegmentPosterior, *, step: int = -1, alpha: float = 0.05, correction: Correction = "holm"
) -> SegmentDifferences:
    """The fused belief at one batch: each segment's posterior against the others', with their covariance.

    Parameters
    ----------
    posterior : SegmentPosterior
        The segment filter's result.
    step : int
        The batch (index into ``posterior.labels``; default the latest).
    alpha : float
        Level of the verdict.
    correction : {"holm", "benjamini_hochberg"}
        The multiplicity rule.

    Returns
    -------
    SegmentDifferences
        ``z_s`` is the contrast's posterior mean over its posterior SD (the mixture's moments when
        ``tau^2`` is integrated). Pooling shrinks the contrasts, so this test is the more cautious one.
    """
    mean, cov = posterior.mean[step], posterior.covariance[step]
    known = np.isfinite(posterior.sd[step])
    skipped = {
        s: "no estimate yet: the posterior is flat"
        for s, k in zip(posterior.segments, known, strict=True)
        if not k
    }
    names = [s for s, k in zip(posterior.segments, known, strict=True) if k]
    return differences_from_rest(
        mean[known],
        cov[np.ix_(known, known)],
        names,
        alpha=alpha,
        correction=correction,
        source="posterior",
        not_assessed=skipped,
    )
