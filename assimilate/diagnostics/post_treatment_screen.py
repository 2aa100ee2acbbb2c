"""Post-treatment screening from the data: model columns determined by the outcome or the treatment.

A pre-treatment covariate is fixed before the treatment; a column computed from the outcome (an
indicator "outcome is zero", the outcome in other units, parts of the outcome) or from the
treatment is not, and adjusting for it biases the effect (Rosenbaum 1984; Montgomery, Nyhan and
Torres 2018). For each model column ``c`` (each level of a categorical one), with the other model
columns ``X``, the treatment ``d`` and a flexible basis ``B_y`` of the outcome:

    P_y = 1 - s²(c ~ B_y + d + X) / s²(c ~ d + X),    P_d = 1 - s²(c ~ d + X) / s²(c ~ X)

``s²`` is the residual variance on its degrees of freedom; ``B_y = [y, (y - k)_+ at 8 quantile
knots, 1{y = v} at the outcome's point masses]``, with ``d y`` beside it in the full model. ``P``
is the share of what the rest leaves that the outcome (the treatment) explains: it measures
determination, not association. A genuine covariate with R² 0.8 with the outcome has ``P_y`` near
0.8; a function of the outcome has 1.

* ERROR (decisive): ``P >= error_bound`` (0.99; it implies R² >= 0.99 on the full model), or
  ``R²(c ~ B_y) >= error_bound`` (a function of the outcome alone, whatever the other columns).
* WARN: a one-sided test of ``H0: P <= warn_bound`` (0.97), or of ``H0: R²(c ~ B_y) <= warn_bound``,
  rejects at ``warn_alpha``, Bonferroni over the batch's tests; the standard error is the delta
  method's for a ratio of mean squared residuals, free of distributional assumptions (cf. Olkin
  and Finn 1995).
* Randomized designs: a pre-treatment column has the same distribution in both arms exactly. The
  two-sided Kolmogorov-Smirnov test (numeric; conservative with ties) or Fisher's exact test
  (binary, each level of a categorical), Bonferroni over levels and tests: ERROR below
  ``error_alpha`` (a calibrated per-look level), WARN below ``warn_alpha``.

Limits (docs/GATES.md measures them): a part of the outcome whose other parts are not model
columns is not determined by the outcome (a pre-treatment part, e.g. a baseline share, behaves
alike), so only the arm test sees it; a binary column that splits the outcome into groups that do
not overlap is determined by the outcome whatever its timing; a step of a continuous outcome
("outcome above 100") is not in ``B_y``; when ``y = a + b`` both ``a`` and ``b`` are flagged.

Clusters: rows of one cluster share their covariates' cluster-level part, so when whole clusters
are randomized (a school, a store, a unit's repeated rows) the row-level arm test compares far
fewer independent draws than it counts and rejects far too often. Given ``cluster``, a column whose
treatment is constant within every cluster is compared between arms on its cluster means (the
Kolmogorov-Smirnov test on one value per cluster; a binary or categorical level's cluster shares
alike), so its level holds at any intra-cluster correlation. When the treatment varies within
clusters (units randomized within clusters), the row-level test stays: a stratified split is at
least as balanced as a simple one, so the test is conservative there.

Example
-------
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal(500); d = rng.integers(0, 2, 500); y = d + x + rng.standard_normal(500)
>>> frame = pd.DataFrame({"x": x, "d": d, "y": y, "y_cents": 100 * y})
>>> screen = post_treatment_screen(frame, outcome="y", treatment="d", covariates=["x", "y_cents"])
>>> screen.error.status, list(screen.errors()), screen.rows[1].outcome_partial_r2 > 0.9999
('fail', ['y_cents'], True)
>>> round(screen.rows[0].outcome_alone_r2, 2)  # x predicts y, but y does not determine x
0.46
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import is_numeric_dtype

from assimilate._validation import check_alpha
from assimilate.diagnostics._arm_tests import arm_test, randomized_clusters
from assimilate.diagnostics._screen_design import (
    BlockDesign,
    Column,
    ResidualSums,
    equals,
    outcome_basis,
    plain,
    product,
)
from assimilate.diagnostics.calibration import stating_rate
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators._threads import one_blas_thread

ScreenStatus = Literal["pass", "warn", "error", "undefined"]
ColumnKind = Literal["numeric", "binary", "categorical"]
MIN_GROUP = 10  # a column is screened when >= 10 units differ from its most common value
RESIDUAL_FLOOR = 1e-9  # share of c's variance left below which nothing more can explain it
SEVERITY = {"undefined": 0, "pass": 1, "warn": 2, "error": 3}
Array = NDArray[np.float64]


@dataclass(frozen=True)
class ScreenRow:
    """One model column: ``*_partial_r2`` is ``P`` of the module docstring (None: not defined).

    ``*_p_adjusted`` are Bonferroni-adjusted over the batch's ``tests`` and a categorical column's
    levels; ``level`` names the categorical level reported (the most severe finding).
    """

    column: str
    kind: ColumnKind
    n: int
    status: ScreenStatus
    reason: str
    level: str = ""
    outcome_r2: float | None = None
    outcome_alone_r2: float | None = None
    outcome_partial_r2: float | None = None
    outcome_p_adjusted: float | None = None
    outcome_alone_p_adjusted: float | None = None
    treatment_partial_r2: float | None = None
    treatment_p_adjusted: float | None = None
    arm_test: str = ""
    arm_statistic: float | None = None
    arm_p_adjusted: float | None = None


@dataclass(frozen=True)
class PostTreatmentScreen:
    """Per-column rows, the ERROR verdict (decisive findings) and the WARN verdict (the others)."""

    rows: tuple[ScreenRow, ...]
    error: Verdict
    warn: Verdict
    tests: int
    n: int
    settings: Mapping[str, Any]

    def errors(self) -> dict[str, str]:
        """Column -> reason, for the decisive findings."""
        return {r.column: r.reason for r in self.rows if r.status == "error"}

    def warnings(self) -> dict[str, str]:
        """Column -> reason, for the findings that are evidence but not decisive."""
        return {r.column: r.reason for r in self.rows if r.status == "warn"}

    def to_frame(self) -> pd.DataFrame:
        """One row per model column, snake_case columns."""
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(ScreenRow.__dataclass_fields__))


# The subsets each response is regressed on: the others, the treatment and the others, the full
# model, the outcome basis alone, and none (the centered response itself).
OTHERS, TREATMENT, FULL, OUTCOME, NONE = range(5)


def _partial(sums: ResidualSums, full: int, reduced: int, bound: float) -> tuple[float | None, float]:
    """Adjusted partial R² of the added block and the one-sided p-value of ``H0: P <= bound``.

    With ``a = e_full²`` and ``b = e_reduced²`` per row, ``P = 1 - ratio (n - 1 - k0) / (n - 1 - k1)``
    for ``ratio = mean(a) / mean(b)``, and the delta method's standard error is
    ``sd(a - ratio b) / sqrt(n) / mean(b)``, from the sums of ``a²``, ``ab`` and ``b²``. Not
    defined (None) when the reduced model leaves less than ``RESIDUAL_FLOOR`` of ``c``'s variance:
    what is left is rounding, and no block can explain it.
    """
    n, (k1, k0) = sums.n, (sums.ranks[full], sums.ranks[reduced])
    a, b = sums.squares[full] / n, sums.squares[reduced] / n
    if sums.squares[reduced] <= RESIDUAL_FLOOR * sums.squares[NONE]:  # the reduced model fixes c already
        return None, 1.0
    ratio = float(a / b)
    partial = 1.0 - ratio * (n - 1 - k0) / (n - 1 - k1)
    moments = sums.products[np.ix_([full, reduced], [full, reduced])] / n
    variance = moments[0, 0] - 2.0 * ratio * moments[0, 1] + ratio**2 * moments[1, 1] - (a - ratio * b) ** 2
    se = math.sqrt(max(float(variance), 0.0)) / math.sqrt(n) / float(b)
    if se == 0.0:
        return partial, 0.0 if partial > bound else 1.0
    return partial, 0.5 * math.erfc((partial - bound) / se / math.sqrt(2.0))  # normal upper tail


def _r2(sums: ResidualSums, subset: int) -> float:
    n, k = sums.n, sums.ranks[subset]
    return float(1.0 - (sums.squares[subset] / (n - 1 - k)) / (sums.squares[NONE] / (n - 1)))


def _complete_rows(
    frame: pd.DataFrame,
    outcome: str,
    treatment: str,
    covariates: Sequence[str],
    categorical: Sequence[str],
    cluster: str | None = None,
) -> pd.DataFrame:
    numeric = [outcome, treatment, *covariates]
    labels = [*categorical, *([cluster] if cluster is not None else [])]
    missing = [c for c in (*numeric, *labels) if c not in frame]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}")
    columns: dict[str, Any] = {  # float64 columns as they are, not copied
        c: (frame[c] if is_numeric_dtype(frame[c]) else pd.to_numeric(frame[c], errors="coerce")).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        for c in numeric
    }
    ok = np.logical_and.reduce([np.isfinite(v) for v in columns.values()]) & np.isin(
        columns[treatment], [0.0, 1.0]
    )
    for column in labels:
        ok &= frame[column].notna().to_numpy()
    columns |= {c: frame[c].astype(str) for c in categorical}
    if cluster is not None and cluster not in categorical:
        columns[cluster] = frame[cluster]
    complete = pd.DataFrame(columns, index=frame.index, copy=False)  # the columns, not a consolidated copy
    return complete if ok.all() else complete.loc[ok]


@one_blas_thread
def post_treatment_screen(
    frame: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    covariates: Sequence[str],
    categorical: Sequence[str] = (),
    randomized: bool = False,
    warn_alpha: float = 0.01,
    error_alpha: float = 2.75e-05,
    warn_bound: float = 0.97,
    error_bound: float = 0.99,
    min_units: int = 50,
    cluster: str | None = None,
) -> PostTreatmentScreen:
    """Screen every model column for determination by the outcome or the treatment (and arm shift).

    Parameters
    ----------
    frame : pandas.DataFrame
        One batch: the outcome, a 0/1 treatment, numeric ``covariates`` and ``categorical`` columns.
        Rows with a missing or non-finite value in any of them are left out.
    outcome, treatment : str
        Column names.
    covariates, categorical : sequence of str
        The model columns: numeric ones, and categorical ones (screened level by level).
    randomized : bool
        Also test each column for a difference between the arms (a randomized design's exact null).
    warn_alpha : float
        Family-wise level of the WARN tests per batch (Bonferroni over its ``tests``).
    error_alpha : float
        Level of the arm test's ERROR per batch (default: ``per_look_alpha(0.01, looks=365)``).
    warn_bound, error_bound : float
        The ``P`` the WARN test is against, and the ``P`` that is decisive (ERROR).
    min_units : int
        With fewer complete rows the screen is undefined.
    cluster : str, optional
        A column of cluster labels (a school, a store, the unit id of repeated rows). When the
        treatment is constant within every cluster, the arm test compares cluster means.

    Returns
    -------
    PostTreatmentScreen
        Rows per column; ``error`` fails on a decisive finding (in a randomized design it states
        ``error_alpha`` as its false-alarm rate), ``warn`` on any other finding (it states
        ``warn_alpha``, the rate for columns whose ``P`` is at most ``warn_bound``).
    """
    warn_alpha, error_alpha = check_alpha(warn_alpha), check_alpha(error_alpha)
    if not 0.0 < warn_bound < error_bound < 1.0:
        raise ValueError(f"need 0 < warn_bound < error_bound < 1, got {warn_bound}, {error_bound}")
    model = [*covariates, *categorical]
    if len(set(model)) != len(model) or {outcome, treatment} & set(model):
        raise ValueError(f"model columns must be distinct and differ from {outcome!r} and {treatment!r}")
    settings = {"warn_alpha": warn_alpha, "error_alpha": error_alpha, "warn_bound": warn_bound}
    settings |= {"error_bound": error_bound, "randomized": randomized}
    data = _complete_rows(frame, outcome, treatment, covariates, categorical, cluster)
    n = len(data)
    arms = f" nor differs between arms (adjusted p >= {error_alpha:.3g})" if randomized else ""
    error_rule = f"no column is determined by the outcome or the treatment (P < {error_bound:g}){arms}"
    warn_rule = (
        f"no test of P <= {warn_bound:g}{' or of equal arms' if randomized else ''} rejects "
        f"(family-wise level {warn_alpha:g} per batch)"
    )
    d = data[treatment].to_numpy(np.float64)
    why = (
        f"{n} complete rows (< {min_units})"
        if n < min_units
        else "no model column"
        if not model
        else "one arm only"
        if d.min() == d.max()
        else ""
    )
    if why:
        error = Verdict.undefined("post_treatment_screen", threshold=error_bound, rule=error_rule, reason=why)
        warn = Verdict.undefined(
            "post_treatment_screen_warn", threshold=warn_bound, rule=warn_rule, reason=why
        )
        return PostTreatmentScreen((), error, warn, 0, n, MappingProxyType(settings))
    blocks, kinds, responses = _batch_columns(data, data[outcome].to_numpy(np.float64), d, model, categorical)
    screened = [(column, level) for column in model for level in responses[column]]
    design = BlockDesign(blocks, n, [responses[column][level] for column, level in screened])
    jobs = [(i, _subsets(column, model)) for i, (column, _) in enumerate(screened)]
    sums = dict(zip(screened, design.residual_sums(jobs), strict=True))
    clusters = randomized_clusters(data, cluster, d) if randomized else None
    tests = len(model) * (4 if randomized else 3)
    rows = tuple(
        _screen_column(
            column,
            kinds[column],
            {level: (values, sums[column, level]) for level, values in responses[column].items()},
            d,
            tests=tests,
            settings=settings,
            clusters=clusters,
        )
        for column in model
    )
    error = _verdict(
        "post_treatment_screen", rows, "error", error_rule, "no column is decisively post-treatment"
    )
    warn = _verdict("post_treatment_screen_warn", rows, "warn", warn_rule, "no column is suspect")
    error = stating_rate(error, error_alpha) if randomized else error
    return PostTreatmentScreen(
        rows, error, stating_rate(warn, warn_alpha), tests, n, MappingProxyType(settings)
    )


def _batch_columns(
    data: pd.DataFrame, y: Array, d: Array, model: Sequence[str], categorical: Sequence[str]
) -> tuple[dict[str, list[Column]], dict[str, ColumnKind], dict[str, dict[str, Column]]]:
    """The design's blocks, each model column's kind, and its responses that vary.

    The blocks: the outcome basis, the treatment, their product and the model columns. A response
    is the column, or a 0/1 column per level of a categorical one. Columns are computed from the batch's arrays when written (``_screen_design``): at 1e7 rows the
    standardized design would be gigabytes.
    """
    n = len(y)
    blocks: dict[str, list[Column]] = {
        "outcome": outcome_basis(y),
        "interaction": [partial(product, d, y)],
        "treatment": [partial(plain, d)],
    }
    kinds: dict[str, ColumnKind] = {}
    responses: dict[str, dict[str, Column]] = {}
    for column in model:
        if column in categorical:
            counts = data[column].value_counts()  # the most frequent level is the baseline
            codes, distinct = pd.factorize(data[column])  # each level's rows from codes: no text compared
            level = {value: partial(equals, codes, k) for k, value in enumerate(distinct)}
            blocks[f"c:{column}"] = [level[v] for v in counts.index[1:]]
            kinds[column] = "categorical"
            varying = [v for v in sorted(counts.index) if min(counts[v], n - counts[v]) >= MIN_GROUP]
            responses[column] = {str(v): level[v] for v in varying}
        else:
            values = data[column].to_numpy(np.float64)
            blocks[f"c:{column}"] = [partial(plain, values)]
            unique, repeats = np.unique(values, return_counts=True)
            kinds[column] = "binary" if len(unique) <= 2 else "numeric"
            responses[column] = {"": partial(plain, values)} if n - repeats.max() >= MIN_GROUP else {}
    return blocks, kinds, responses


def _subsets(column: str, model: Sequence[str]) -> list[list[str]]:
    """The blocks of OTHERS, TREATMENT, FULL, OUTCOME and NONE for ``column``."""
    others = [f"c:{c}" for c in model if c != column]
    return [others, ["treatment", *others], ["outcome", "interaction", "treatment", *others], ["outcome"], []]


def _verdict(name: str, rows: tuple[ScreenRow, ...], status: str, rule: str, otherwise: str) -> Verdict:
    found = [r.reason for r in rows if r.status == status]
    return Verdict.evaluate(
        name,
        value=float(len(found)),
        threshold=0.0,
        rule=rule,
        passed=not found,
        reason="; ".join(found) or otherwise,
    )


def _screen_column(
    column: str,
    kind: ColumnKind,
    levels: dict[str, tuple[Column, ResidualSums]],
    d: Array,
    *,
    tests: int,
    settings: Mapping[str, Any],
    clusters: NDArray[np.int64] | None = None,
) -> ScreenRow:
    """One column's row; a categorical column reports its level with the most severe finding."""
    n, bound = len(d), settings["warn_bound"]
    factor = tests * max(len(levels), 1)  # Bonferroni over the batch's tests and the column's levels
    found: list[tuple[int, float, ScreenRow]] = []
    for level, (response, sums) in levels.items():
        collinear = sums.squares[OTHERS] < RESIDUAL_FLOOR * sums.squares[NONE]  # the other columns fix it
        p_y, pv_y = (None, 1.0) if collinear else _partial(sums, FULL, TREATMENT, bound)
        alone, pv_alone = _partial(sums, OUTCOME, NONE, bound)
        p_d, pv_d = (None, 1.0) if collinear else _partial(sums, TREATMENT, OTHERS, bound)
        values: dict[str, Any] = {
            "level": level,
            "outcome_r2": _r2(sums, FULL),
            "outcome_alone_r2": alone,
            "outcome_partial_r2": p_y,
            "outcome_p_adjusted": min(1.0, factor * pv_y),
            "outcome_alone_p_adjusted": min(1.0, factor * pv_alone),
            "treatment_partial_r2": p_d,
            "treatment_p_adjusted": min(1.0, factor * pv_d),
        }
        if settings["randomized"]:
            raw = response(slice(0, n))
            name, statistic, p_arm = arm_test(raw, d, numeric=kind == "numeric", clusters=clusters)
            values |= {
                "arm_test": name,
                "arm_statistic": statistic,
                "arm_p_adjusted": min(1.0, factor * p_arm),
            }
        shown = f"{column!r}" + (f" (level {level!r})" if kind == "categorical" else "")
        status, reason = _judge(shown, values, settings, tests)
        if status == "pass" and collinear:
            status, reason = "undefined", f"{shown}: not screened: the other model columns fix it (collinear)"
        row = ScreenRow(column, kind, n, status, reason, **values)
        found.append((SEVERITY[status], max(p_y or 0.0, p_d or 0.0), row))
    if not found:
        why = f"fewer than {MIN_GROUP} units differ from its most common value"
        return ScreenRow(column, kind, n, "undefined", f"{column!r}: not screened: {why}")
    return max(found, key=lambda item: item[:2])[2]


def _judge(
    name: str, s: Mapping[str, Any], settings: Mapping[str, Any], tests: int
) -> tuple[ScreenStatus, str]:
    """The status and the reason, naming the column and the statistic."""
    error_bound, warn_bound = settings["error_bound"], settings["warn_bound"]
    p_y, p_d, arm_p = s["outcome_partial_r2"], s["treatment_partial_r2"], s.get("arm_p_adjusted")
    outcome = (
        f"{name} is determined by the outcome with the treatment and the other covariates "
        f"(P {p_y or 0:.4f}: partial R² of a function of the outcome"
    )
    treatment = f"{name} is determined by the treatment (P {p_d or 0:.4f}: partial R² of the treatment"
    alone = f"{name} is determined by the outcome alone (R² {s['outcome_alone_r2'] or 0:.4f}"
    if s["outcome_alone_r2"] is not None and s["outcome_alone_r2"] >= error_bound:
        return "error", f"{alone} >= {error_bound:g})"
    if p_y is not None and p_y >= error_bound:
        return "error", f"{outcome} >= {error_bound:g})"
    if p_d is not None and p_d >= error_bound:
        return "error", f"{treatment} >= {error_bound:g})"
    arms = (
        f"{name} differs between the randomized arms ({s.get('arm_test')} {s.get('arm_statistic') or 0:.4g}, "
        f"p = {arm_p or 0:.3g} adjusted over {tests} tests"
    )
    if arm_p is not None and arm_p < settings["error_alpha"]:
        return (
            "error",
            f"{arms} < {settings['error_alpha']:.3g}): a randomized treatment cannot move a pre-treatment column",
        )
    if s["outcome_alone_p_adjusted"] < settings["warn_alpha"]:
        return "warn", f"{alone} above {warn_bound:g} at adjusted p = {s['outcome_alone_p_adjusted']:.3g})"
    if s["outcome_p_adjusted"] < settings["warn_alpha"]:
        return "warn", f"{outcome} above {warn_bound:g} at adjusted p = {s['outcome_p_adjusted']:.3g})"
    if s["treatment_p_adjusted"] < settings["warn_alpha"]:
        return "warn", f"{treatment} above {warn_bound:g} at adjusted p = {s['treatment_p_adjusted']:.3g})"
    if arm_p is not None and arm_p < settings["warn_alpha"]:
        return "warn", f"{arms} < {settings['warn_alpha']:g})"
    return "pass", f"{name}: no sign of a post-treatment column"
