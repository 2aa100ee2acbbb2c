"""Effects by segment in one batch: the batch's estimator run on each segment's rows.

Segment ``s`` is the set of rows whose effect modifier takes level ``s`` (a categorical column) or
falls in bin ``[e_s, e_{s+1})`` (a continuous one); its effect is
``tau_s = E[Y(1) - Y(0) | segment s]``, estimated by the batch's estimator on those rows alone, with
that estimator's own standard error. Segments share no rows, so their estimates are independent.
A segment too small to estimate is *not assessed*, with the reason: never a NaN.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> batch = pd.DataFrame({"d": rng.binomial(1, 0.5, 600), "region": rng.choice(["north", "south"], 600)})
>>> batch["y"] = batch["d"] * np.where(batch["region"] == "north", 1.0, 0.5) + rng.standard_normal(600)
>>> effects = segment_effects(batch, segment_by="region", treatment="d", outcome="y")
>>> [(s.segment, f"{s.estimate.estimate:.1f}", s.n_treated) for s in effects.segments]
[('north', '1.0', 168), ('south', '0.5', 158)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._validation import check_alpha, check_choice
from assimilate.estimators._inputs import batch_arrays
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

if TYPE_CHECKING:
    from assimilate.estimators import EstimatorName

FloatArray = NDArray[np.float64]
SegmentKind = Literal["categorical", "binned"]
MIN_PER_ARM = 10
"""Default smallest arm of an assessed segment: below it a Wald interval is not worth stating."""


@dataclass(frozen=True)
class SegmentEffect:
    """One segment's effect, or the reason it was not assessed.

    Parameters
    ----------
    segment : str
        The segment's label (a level, or a bin such as ``"[20, 40)"``).
    n_treated, n_control : int
        Rows of the segment in each arm.
    estimate : EffectEstimate or None
        The estimator's result on the segment's rows; None when not assessed.
    reason : str
        Why the segment was not assessed (empty when it was).
    """

    segment: str
    n_treated: int
    n_control: int
    estimate: EffectEstimate | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if (self.estimate is None) == (not self.reason):
            raise ValueError(
                "a segment has either an estimate or the reason it has none, not both or neither"
            )

    @property
    def assessed(self) -> bool:
        """Whether the segment has an estimate."""
        return self.estimate is not None


@dataclass(frozen=True)
class SegmentEffects:
    """Every segment's effect in one batch.

    Parameters
    ----------
    segment_by : str
        The effect-modifier column.
    kind : {"categorical", "binned"}
        Levels of a column, or bins of a continuous one.
    method : str
        The estimator run on every segment.
    estimand : str
        Its estimand, within each segment.
    segments : tuple of SegmentEffect
        In segment order (the levels' order, or the bins' from low to high).
    edges : tuple of float
        The bin edges (empty for levels): reuse them for later batches so segments stay the same.
    """

    segment_by: str
    kind: SegmentKind
    method: str
    estimand: str
    segments: tuple[SegmentEffect, ...]
    edges: tuple[float, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """The segments' labels, in order."""
        return tuple(s.segment for s in self.segments)

    @property
    def assessed(self) -> tuple[SegmentEffect, ...]:
        """The segments with an estimate."""
        return tuple(s for s in self.segments if s.assessed)

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per segment; estimate columns are missing (``<NA>``) where ``reason`` says why."""
        check_alpha(alpha)
        rows = []
        for s in self.segments:
            fit = s.estimate
            lower, upper = fit.conf_int(alpha) if fit is not None else (None, None)
            rows.append(
                {
                    "segment": s.segment,
                    "assessed": s.assessed,
                    "estimate": None if fit is None else fit.estimate,
                    "std_error": None if fit is None else fit.std_error,
                    "ci_lower": lower,
                    "ci_upper": upper,
                    "n_treated": s.n_treated,
                    "n_control": s.n_control,
                    "reason": s.reason,
                }
            )
        table = pd.DataFrame(rows)
        for column in ("estimate", "std_error", "ci_lower", "ci_upper"):
            table[column] = pd.array(table[column].tolist(), dtype="Float64")
        return table.assign(method=self.method, estimand=self.estimand, alpha=alpha)


def quantile_edges(values: Sequence[float] | FloatArray, n_bins: int) -> tuple[float, ...]:
    """Inner quantile edges of ``n_bins`` bins, with outer edges ``-inf`` and ``inf``.

    Tied quantiles (a lumpy column) are merged, so fewer bins can come back; the outer edges are
    infinite so a later batch reusing the edges has no value outside them.

    Parameters
    ----------
    values : array_like
        The column's values (finite).
    n_bins : int
        Bins wanted (>= 2).

    Returns
    -------
    tuple of float
        Strictly increasing edges.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 2:
        raise ValueError(
            f"bins must be a whole number >= 2 (quantile bins) or a list of edges, got {n_bins!r}"
        )
    x = np.asarray(values, dtype=np.float64)
    inner = np.unique(np.quantile(x, np.linspace(0.0, 1.0, int(n_bins) + 1)[1:-1]))
    return (-math.inf, *(float(e) for e in inner), math.inf)


def _bin_label(low: float, high: float, last: bool) -> str:
    if math.isinf(low):
        return f"< {high:g}"
    if math.isinf(high):
        return f">= {low:g}"
    return f"[{low:g}, {high:g}{']' if last else ')'}"


def _assign(
    data: pd.DataFrame,
    column: str,
    *,
    levels: Sequence[str] | None,
    bins: int | Sequence[float] | None,
    where: str,
) -> tuple[SegmentKind, NDArray[np.int64], tuple[str, ...], tuple[float, ...]]:
    """Each row's segment index, the labels and the edges; every broken rule named."""
    if column not in data.columns:
        raise ValueError(f"{where}segment column {column!r} not in the data (columns: {list(data.columns)})")
    series = data[column]
    if series.isna().any():
        raise ValueError(
            f"{where}segment column {column!r}: {int(series.isna().sum())} missing value(s); every row needs a segment"
        )
    if bins is None:
        # Factorize once (sorted: 2 before 10); labels are the values as text.
        codes, uniques = pd.factorize(series, sort=not isinstance(series.dtype, pd.CategoricalDtype))
        text = [str(v) for v in uniques]
        if levels is None:
            found = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else text
            levels = [str(v) for v in found]
        labels = tuple(str(v) for v in levels)
        if len(set(labels)) != len(labels):
            raise ValueError(f"{where}segment column {column!r}: levels must be distinct, got {list(labels)}")
        unknown = sorted(set(text) - set(labels))
        if unknown:
            raise ValueError(
                f"{where}segment column {column!r}: value(s) {unknown} not among the levels {list(labels)}"
            )
        position = {label: j for j, label in enumerate(labels)}
        index = np.array([position[v] for v in text], dtype=np.int64)[codes]
        return "categorical", index, labels, ()
    if levels is not None:
        raise ValueError("give levels (a categorical segment column) or bins (a continuous one), not both")
    try:
        x = series.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}segment column {column!r} must be numeric to be binned: {error}") from error
    edges = quantile_edges(x, bins) if isinstance(bins, int) else tuple(float(e) for e in bins)
    if len(edges) < 3 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be at least 3 strictly increasing edges (2 bins), got {list(edges)}")
    outside = (x < edges[0]) | (x > edges[-1]) | np.isnan(x)
    if outside.any():
        raise ValueError(
            f"{where}segment column {column!r}: {int(outside.sum())} value(s) outside the bins "
            f"[{edges[0]:g}, {edges[-1]:g}]"
        )
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2).astype(np.int64)
    labels = tuple(_bin_label(edges[i], edges[i + 1], i == len(edges) - 2) for i in range(len(edges) - 1))
    return "binned", index, labels, edges


def segment_effects(
    data: pd.DataFrame,
    *,
    segment_by: str,
    treatment: str,
    outcome: str,
    method: EstimatorName = "difference_in_means",
    covariates: Sequence[str] = (),
    estimand: Estimand = "ATE",
    levels: Sequence[str] | None = None,
    bins: int | Sequence[float] | None = None,
    min_per_arm: int = MIN_PER_ARM,
    batch: str | None = None,
    **options: Any,
) -> SegmentEffects:
    """Each segment's effect with the batch's estimator, its SE and its rows per arm.

    Parameters
    ----------
    data : DataFrame
        One batch, one row per unit.
    segment_by : str
        The effect-modifier column.
    treatment, outcome : str
        Column names.
    method : {"difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw"}
        The batch's estimator, run on each segment's rows.
    covariates : sequence of str
        The estimator's covariates; a categorical ``segment_by`` is left out of them (constant
        within a segment).
    estimand : {"ATE", "ATT", "ATC"}
        The estimand within each segment.
    levels : sequence of str, optional
        The levels of a categorical column, in order (default: its categories, else sorted values).
        A level with no rows is reported as not assessed; a value outside the levels is an error.
    bins : int or sequence of float, optional
        Bin a continuous column: edges (bins ``[e_i, e_{i+1})``, the last one closed), or a number
        of quantile bins of this batch (:func:`quantile_edges`; the edges are returned in ``edges``).
    min_per_arm : int
        Rows per arm below which a segment is not assessed.
    batch : str, optional
        The batch's label, named in error messages.
    **options
        Estimator options, as in :func:`assimilate.estimators.estimate_effect`.

    Returns
    -------
    SegmentEffects

    Raises
    ------
    ValueError
        Naming the batch, the column and the rule: a missing or unknown segment value, a value
        outside the bins, or a batch the estimator refuses as a whole.

    Notes
    -----
    The segment's effect is a refit of the estimator on the segment's rows, not a sum of the
    batch fit's influence values over the segment: those are each unit's share of the *batch*
    effect (the difference in means' ``psi_i`` is centred at the whole arm's mean), not a segment
    effect, except for AIPW's score. A refit is the subgroup analysis itself (the subgroup
    difference in means; the subgroup regression), with the estimator's own standard error, and
    the segments' estimates are independent because they share no rows. The price is that
    nuisance models are fitted on the segment's rows: a segment whose fit fails (separation, a
    covariate constant within it) is not assessed with the estimator's message.
    """
    # The package imports this module for its exports: its estimators are read when called.
    from assimilate.estimators import ESTIMATORS, estimate_effect

    check_choice("method", method, ESTIMATORS)
    check_choice("estimand", estimand, ESTIMANDS)
    if isinstance(min_per_arm, bool) or int(min_per_arm) != min_per_arm or min_per_arm < 2:
        raise ValueError(f"min_per_arm must be a whole number >= 2, got {min_per_arm!r}")
    where = f"batch {batch!r}: " if batch else ""
    kind, index, labels, edges = _assign(data, segment_by, levels=levels, bins=bins, where=where)
    used = [c for c in covariates if not (kind == "categorical" and c == segment_by)]
    try:
        arrays = batch_arrays(data, treatment=treatment, outcome=outcome)  # the batch's own rules first
    except ValueError as error:
        raise ValueError(f"{where}{error}") from error
    segments = []
    for code, label in enumerate(labels):
        rows = index == code
        n_treated = int(arrays.treatment[rows].sum())
        n_control = int(rows.sum()) - n_treated
        reason = ""
        fit: EffectEstimate | None = None
        if min(n_treated, n_control) < min_per_arm:
            reason = f"{n_treated} treated and {n_control} control rows; needs at least {min_per_arm} per arm"
        else:
            try:
                fit = estimate_effect(
                    data.loc[rows],
                    method=method,
                    treatment=treatment,
                    outcome=outcome,
                    covariates=used,
                    estimand=estimand,
                    **options,
                )
            except ValueError as error:  # separation, a constant column: named by the estimator
                reason = f"the estimator refused the segment's rows ({type(error).__name__}: {error})"
            if fit is not None and not fit.is_finite:
                fit, reason = None, "the estimate or its standard error is not finite, or the SE is zero"
        segments.append(SegmentEffect(label, n_treated, n_control, fit, reason))
    return SegmentEffects(segment_by, kind, method, estimand, tuple(segments), edges)


def stack_segment_effects(
    batches: Sequence[SegmentEffects], *, segments: Sequence[str] | None = None
) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
    """Batches' segment effects as ``T x S`` arrays for the segment filter.

    Parameters
    ----------
    batches : sequence of SegmentEffects
        One per batch, in time order.
    segments : sequence of str, optional
        The segments, in order (default: every label seen, in order of first appearance).

    Returns
    -------
    estimates, standard_errors : ndarray
        ``T x S``; NaN where a segment was not assessed in a batch (no observation: the filter
        predicts only).
    segments : tuple of str
    """
    if segments is None:
        seen: dict[str, None] = {}
        for effects in batches:
            seen.update(dict.fromkeys(effects.labels))
        segments = tuple(seen)
    names = tuple(segments)
    position = {name: j for j, name in enumerate(names)}
    y = np.full((len(batches), len(names)), math.nan)
    se = np.full_like(y, math.nan)
    for t, effects in enumerate(batches):
        for s in effects.assessed:
            if s.segment not in position:
                raise ValueError(f"batch {t}: segment {s.segment!r} is not among the segments {list(names)}")
            assert s.estimate is not None
            y[t, position[s.segment]] = s.estimate.estimate
            se[t, position[s.segment]] = s.estimate.std_error
    return y, se, names
