"""A study's effects by segment: its modifiers, one batch's table, the fused stream, the difference check.

The plan's ``effect_modifier`` columns (:attr:`AnalysisPlan.effect_modifiers`) each cut a batch into
segments: a categorical column's declared levels, or a continuous column's bins. Bins are fixed for
the whole study, so segment ``s`` means the same rows' definition in every batch: the edges given in
``segments.edges``, else the ``segments.bins`` quantiles of the study's first batch
(:func:`modifiers_of`). Per batch, the primary estimator is refitted on each segment's rows
(:func:`batch_segments`, stored as :func:`segment_table`); over the batches, each modifier's
segments are fused with partial pooling (:func:`fuse_segments`,
:func:`assimilate.filters.segments.segment_filter`); the difference check tests each segment against
the rest and adjusts the p-values of every segment of every modifier together by the study's rule
(:func:`pooled_differences`: Holm or Benjamini-Hochberg).

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan(
...     unit_id="u", treatment="d", outcome="y", outcome_type="continuous", design={"kind": "randomized"},
...     categorical={"region": ["north", "south"]}, primary_estimator="difference_in_means",
...     process_var=0.0, causal_graph={"roles": {"region": "effect_modifier"}})
>>> rng = np.random.default_rng(0)
>>> rows = pd.DataFrame({"u": range(800), "d": rng.binomial(1, 0.5, 800),
...                      "region": rng.choice(["north", "south"], 800)})
>>> rows["y"] = rows["d"] * np.where(rows["region"] == "north", 1.0, 0.0) + rng.standard_normal(800)
>>> found = batch_segments(rows, plan, modifiers_of(plan), batch="2025-01-01")
>>> pooled_differences(found, plan.segment_settings).flagged
(('region', 'north'), ('region', 'south'))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from assimilate.diagnostics.calibration import GateVerdict, stating_rate
from assimilate.diagnostics.heterogeneity import (
    SegmentDifferences,
    adjust_p_values,
    posterior_segment_differences,
    segment_differences,
)
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.result import EffectEstimate
from assimilate.estimators.segments import (
    SegmentEffect,
    SegmentEffects,
    SegmentKind,
    quantile_edges,
    segment_effects,
)
from assimilate.filters import causal_kalman
from assimilate.filters.segments import SegmentPosterior, segment_filter

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan
    from assimilate.design.sections import SegmentSettings

CHECK_NAME = "segment_difference"
POSTERIOR_CHECK_NAME = "fused_segment_difference"
CORRECTION: dict[str, Literal["holm", "benjamini_hochberg"]] = {"holm": "holm", "bh": "benjamini_hochberg"}
_WORDS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
TABLE_COLUMNS = (
    "modifier",
    "kind",
    "position",
    "segment",
    "assessed",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "n_treated",
    "n_control",
    "reason",
    "method",
    "estimand",
    "edges",
)


@dataclass(frozen=True)
class Modifier:
    """One effect modifier and how it cuts a batch: levels (categorical) or fixed edges (binned).

    Attributes
    ----------
    column : str
        The column.
    kind : {"categorical", "binned"}
        Levels, or bins of a continuous column.
    levels : tuple of str or None
        The declared levels of a categorical column.
    edges : tuple of float or None
        A binned column's edges, ``-inf`` and ``inf`` outside.
    """

    column: str
    kind: SegmentKind
    levels: tuple[str, ...] | None = None
    edges: tuple[float, ...] | None = None


def modifiers_of(plan: AnalysisPlan, first_batch: pd.DataFrame | None = None) -> tuple[Modifier, ...]:
    """The plan's modifiers with their segments fixed for the whole study.

    Parameters
    ----------
    plan : AnalysisPlan
        The study's plan.
    first_batch : DataFrame, optional
        The study's first batch's valid rows: a continuous modifier without ``segments.edges`` is cut
        at its ``segments.bins`` quantiles there (needed only then).

    Returns
    -------
    tuple of Modifier

    Raises
    ------
    ValueError
        Naming the column when there is no first batch to cut it from. (Tied quantiles merge: a
        lumpy column can give fewer bins, an empty one is not assessed in every batch.)
    """
    settings = plan.segment_settings
    found = []
    for column in plan.effect_modifiers:
        if column in plan.categorical:
            found.append(Modifier(column, "categorical", levels=tuple(plan.categorical[column])))
            continue
        cuts = settings.edges.get(column)
        if cuts:
            found.append(Modifier(column, "binned", edges=(-math.inf, *map(float, cuts), math.inf)))
            continue
        if first_batch is None or column not in first_batch.columns or first_batch.empty:
            raise ValueError(
                f"effect modifier {column!r}: its bins are cut from the first batch, which has no rows"
            )
        edges = quantile_edges(first_batch[column].to_numpy(dtype=np.float64), settings.bins)
        found.append(Modifier(column, "binned", edges=edges))
    return tuple(found)


def _options(plan: AnalysisPlan, column: str, rng: np.random.Generator | None) -> dict[str, Any]:
    """The primary estimator's options as fit_batch gives them, the modifier's own levels left out."""
    method = plan.primary_estimator
    categories = {c: list(v) for c, v in plan.categorical.items() if c != column}
    options: dict[str, Any] = {}
    if method in ("regression_adjustment", "lin_interacted", "ipw", "aipw"):
        options["categories"] = categories
    if method in ("ipw", "aipw"):
        options |= {"policy": plan.propensity.policy, "bounds": tuple(plan.propensity.bounds)}
    if method == "aipw" and plan.cross_fitting_folds is not None:
        options |= {"n_folds": plan.cross_fitting_folds, "rng": rng or np.random.default_rng(plan.seed)}
    return options


def batch_segments(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    modifiers: Sequence[Modifier],
    *,
    batch: str,
    rng: np.random.Generator | None = None,
) -> dict[str, SegmentEffects]:
    """Each modifier's segment effects in one batch: the primary estimator on each segment's rows.

    Parameters
    ----------
    valid : DataFrame
        The batch's valid rows.
    plan : AnalysisPlan
        The study's plan (columns, primary estimator, estimand, propensity policy).
    modifiers : sequence of Modifier
        From :func:`modifiers_of`.
    batch : str
        The batch, named in errors.
    rng : numpy.random.Generator, optional
        Cross-fitting folds (AIPW with ``cross_fitting_folds``).

    Returns
    -------
    dict of str to SegmentEffects
        By modifier column.
    """
    return {
        m.column: segment_effects(
            valid,
            segment_by=m.column,
            treatment=plan.treatment,
            outcome=plan.outcome,
            method=plan.primary_estimator,  # type: ignore[arg-type]
            covariates=plan.model_columns,
            estimand=plan.estimand,  # type: ignore[arg-type]
            levels=m.levels,
            bins=m.edges,
            batch=batch,
            **_options(plan, m.column, rng),
        )
        for m in modifiers
    }


def segment_table(found: Mapping[str, SegmentEffects], *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per modifier and segment (the stored table); ``edges`` as JSON text (empty for levels)."""
    frames = [
        effects.to_frame(alpha).assign(
            modifier=column,
            kind=effects.kind,
            position=np.arange(len(effects.segments), dtype=np.int64),
            edges=json.dumps([e if math.isfinite(e) else str(e) for e in effects.edges]),
        )
        for column, effects in found.items()
    ]
    if not frames:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    return pd.concat(frames, ignore_index=True).loc[:, list(TABLE_COLUMNS)]


def effects_from_table(rows: pd.DataFrame) -> dict[str, SegmentEffects]:
    """The stored rows of one batch back as each modifier's :class:`SegmentEffects`."""
    found = {}
    for column, part in rows.sort_values(["modifier", "position"]).groupby("modifier", sort=False):
        segments = []
        row: Any  # a stored row: its fields are the table's columns
        for row in part.itertuples(index=False):
            fit = None
            if bool(row.assessed):
                fit = EffectEstimate(
                    float(row.estimate), float(row.std_error), int(row.n_treated), int(row.n_control),
                    str(row.method), "stored", str(row.estimand),  # type: ignore[arg-type]
                )  # fmt: skip
            segments.append(SegmentEffect(str(row.segment), int(row.n_treated), int(row.n_control), fit,
                                          "" if fit is not None else str(row.reason)))  # fmt: skip
        first = part.iloc[0]
        edges = tuple(float(e) for e in json.loads(str(first["edges"]) or "[]"))
        found[str(column)] = SegmentEffects(str(column), first["kind"], str(first["method"]),
                                            str(first["estimand"]), tuple(segments), edges)  # fmt: skip
    return found


def fuse_segments(
    table: pd.DataFrame,
    batches: Sequence[str],
    excluded: Sequence[bool],
    *,
    common_process_var: float = 0.0,
    alpha: float = 0.05,
    se_inflation: float = 1.0,
) -> dict[str, SegmentPosterior]:
    """Each modifier's segments fused over ``batches`` with partial pooling (``tau^2`` integrated).

    Parameters
    ----------
    table : DataFrame
        Stored segment rows of every batch (:func:`segment_table` with ``partition_key``).
    batches : sequence of str
        The batches in time order (the effect posterior's).
    excluded : sequence of bool
        Batches kept out of the effect's posterior: their segments are not observed either.
    common_process_var : float
        The random-walk variance per batch of the common effect (the effect posterior's).
    alpha : float
        Intervals at level ``1 - alpha``.
    se_inflation : float
        Multiplies every segment's standard error (>= 1): :func:`shared_unit_inflation` when the
        batches share units, since the segment filter treats batches as independent.

    Returns
    -------
    dict of str to SegmentPosterior
        By modifier; a modifier with no assessed segment in any admitted batch is left out.
    """
    if not (math.isfinite(se_inflation) and se_inflation >= 1.0):
        raise ValueError(f"se_inflation must be a finite number >= 1, got {se_inflation!r}")
    fused = {}
    for column, part in table.groupby("modifier", sort=True):
        labels = list(dict.fromkeys(part.sort_values("position")["segment"].astype(str)))
        y = np.full((len(batches), len(labels)), math.nan)
        se = np.full_like(y, math.nan)
        index = {b: t for t, b in enumerate(batches)}
        where = {s: j for j, s in enumerate(labels)}
        row: Any
        for row in part[part["assessed"].astype(bool)].itertuples(index=False):
            t = index.get(str(row.partition_key))
            if t is not None and not excluded[t]:
                y[t, where[str(row.segment)]] = row.estimate
                se[t, where[str(row.segment)]] = se_inflation * float(row.std_error)
        if len(labels) < 2 or not np.isfinite(y).any():
            continue
        fused[str(column)] = segment_filter(
            y, se, segments=labels, labels=list(batches), between_var="integrated",
            common_process_var=common_process_var, alpha=alpha,
        )  # fmt: skip
    return fused


def shared_unit_inflation(
    estimates: Sequence[float],
    standard_errors: Sequence[float],
    excluded: Sequence[bool],
    *,
    fused_var: float,
    process_var: float = 0.0,
) -> float:
    """How much wider the overall effect's fused SD is than if its batches were independent (>= 1).

    When batches share units, the effect posterior fuses them with their correlation
    (:mod:`assimilate.filters.correlated`), but the segment filter cannot: it has no segment's
    cross-batch covariance. Each segment's standard errors are then multiplied by this ratio, the
    square root of the overall effect's design effect ``fused_var / var_independent`` at the latest
    batch (``var_independent``: the Kalman filter of the same admitted estimates, diffuse, the same
    process variance). This assumes the segments' batches are correlated as the whole batch's are;
    it matches the overall effect's width at the latest batch, and is conservative at earlier ones.

    Parameters
    ----------
    estimates, standard_errors : sequence of float
        The primary estimate of every batch (NaN where none) and its SE.
    excluded : sequence of bool
        Batches kept out of the posterior.
    fused_var : float
        The effect posterior's variance after the latest batch (with the correlation).
    process_var : float
        Its random-walk variance per batch.

    Returns
    -------
    float
        ``max(1, sqrt(fused_var / var_independent))``; 1 without an admitted estimate.
    """
    y, se = np.asarray(estimates, dtype=np.float64), np.asarray(standard_errors, dtype=np.float64)
    keep = ~np.asarray(excluded, dtype=bool) & np.isfinite(y) & np.isfinite(se) & (se > 0)
    if not keep.any() or not math.isfinite(fused_var) or fused_var <= 0:
        return 1.0
    independent = causal_kalman(y[keep], se[keep], process_var=max(process_var, 0.0), diffuse=True)
    return max(1.0, math.sqrt(fused_var / float(independent.posterior_var[-1])))


@dataclass(frozen=True)
class PooledDifferences:
    """The difference check over every modifier, with one multiplicity adjustment across all segments.

    Attributes
    ----------
    verdict : GateVerdict
        Fails when any segment's adjusted p-value is below the level; undefined when no modifier has
        two segments with an estimate.
    table : DataFrame
        One row per tested segment: modifier, segment, difference, std_error, z, p_value,
        adjusted_p_value (across all), differs.
    by_modifier : Mapping[str, SegmentDifferences]
        Each modifier's own test (its ``adjusted_p_value`` adjusts within the modifier only).
    """

    verdict: GateVerdict
    table: pd.DataFrame
    by_modifier: Mapping[str, SegmentDifferences]

    @property
    def flagged(self) -> tuple[tuple[str, str], ...]:
        """``(modifier, segment)`` of each segment that differs from the rest."""
        rows = self.table.loc[self.table["differs"].astype(bool)]
        return tuple(zip(rows["modifier"], rows["segment"], strict=True))

    def for_modifier(self, column: str) -> SegmentDifferences | None:
        """One modifier's test with the adjusted p-values of the whole family (what the forest plot marks)."""
        test = self.by_modifier.get(column)
        if test is None or not test.adjusted_p_value:
            return None
        rows = self.table.loc[self.table["modifier"] == column].set_index("segment")["adjusted_p_value"]
        return replace(test, adjusted_p_value=tuple(float(rows[s]) for s in test.segments))


def _pooled(
    tests: Mapping[str, SegmentDifferences], settings: SegmentSettings, name: str, what: str
) -> PooledDifferences:
    rule_word, level = _WORDS[settings.multiplicity], settings.level
    frames = [t.to_frame().assign(modifier=m) for m, t in tests.items() if t.verdict.status != "undefined"]
    rule = (
        f"{rule_word}-adjusted p-value (over every segment of every modifier) of 'the segment's {what} differs "
        f"from the rest' >= {level:g} for every segment"
    )
    if not frames:
        reasons = (
            "; ".join(f"{m}: {t.verdict.reason}" for m, t in tests.items())
            or "no segment has an estimate yet"
        )
        verdict = Verdict.undefined(name, threshold=level, rule=rule, reason=reasons)
        empty = pd.DataFrame(columns=["modifier", "segment", "adjusted_p_value", "differs"])
        return PooledDifferences(stating_rate(verdict, level), empty, dict(tests))
    table = pd.concat(frames, ignore_index=True)
    table["adjusted_p_value"] = adjust_p_values(
        table["p_value"], correction=CORRECTION[settings.multiplicity]
    )
    table["differs"] = table["adjusted_p_value"] < level
    table = table.assign(correction=rule_word, alpha=level)
    shown = table[table["differs"]]
    if len(shown):
        listed = ", ".join(
            f"{r.modifier} = {r.segment} ({r.difference:+.4g} vs the rest, SE {r.std_error:.3g}, adjusted p {r.adjusted_p_value:.3g})"
            for r in shown.itertuples(index=False)
        )
        reason = f"{len(shown)} of {len(table)} segments differ from the rest ({rule_word}, level {level:g}): {listed}"
    else:
        reason = (
            f"no segment differs from the rest beyond chance (smallest {rule_word}-adjusted p "
            f"{table['adjusted_p_value'].min():.3g} over {len(table)} segments)"
        )
    verdict = Verdict.evaluate(
        name, value=float(table["adjusted_p_value"].min()), threshold=level, rule=rule,
        passed=not len(shown), reason=reason,
    )  # fmt: skip
    return PooledDifferences(stating_rate(verdict, level), table, dict(tests))


def pooled_differences(found: Mapping[str, SegmentEffects], settings: SegmentSettings) -> PooledDifferences:
    """One batch's difference check: each segment's estimate against the rest's, adjusted across all.

    Parameters
    ----------
    found : Mapping[str, SegmentEffects]
        The batch's segment effects by modifier.
    settings : SegmentSettings
        The level and the multiplicity rule.

    Returns
    -------
    PooledDifferences
    """
    tests = {m: segment_differences(e, alpha=settings.level, correction=CORRECTION[settings.multiplicity])
             for m, e in found.items()}  # fmt: skip
    return _pooled(tests, settings, CHECK_NAME, "effect")


def posterior_differences(
    fused: Mapping[str, SegmentPosterior], settings: SegmentSettings
) -> PooledDifferences:
    """The fused belief after the latest batch: each segment's posterior against the rest's, adjusted across all.

    The contrasts use the posterior covariance; pooling shrinks them, so this is the cautious test.
    """
    tests = {
        m: posterior_segment_differences(
            p, alpha=settings.level, correction=CORRECTION[settings.multiplicity]
        )
        for m, p in fused.items()
    }
    return _pooled(tests, settings, POSTERIOR_CHECK_NAME, "fused effect")
