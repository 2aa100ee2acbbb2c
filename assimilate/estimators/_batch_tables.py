"""The per-row and per-model tables of a fitted batch, as :func:`~assimilate.estimators.batch.fit_batch` gives them.

Each frame keeps the row's ``row_index`` (its place in the delivered file) beside the fitted
values: ``e(x_i)`` and its bounded value, ``m_0(x_i)`` and ``m_1(x_i)``, ``psi_i``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assimilate.estimators.influence import InfluenceContributions
from assimilate.estimators.models import PropensityModel
from assimilate.estimators.outcome import OutcomeModel

ROW_INDEX = "row_index"
"""The column naming each row's place in the delivered file (kept in every per-row table)."""
INFLUENCE_COLUMNS = [ROW_INDEX, "unit_id", "influence"]
SCORE_COLUMNS = [ROW_INDEX, "unit_id", "treatment", "propensity", "used_propensity", "kept"]


def influence_frame(valid: pd.DataFrame, unit_id: str, fit: InfluenceContributions | None) -> pd.DataFrame:
    """One row per row of the batch: its unit id and influence value (empty without a fit)."""
    if fit is None:
        return pd.DataFrame(
            {ROW_INDEX: np.empty(0, np.int64), "unit_id": np.empty(0, object), "influence": np.empty(0)}
        )
    return pd.DataFrame(
        {
            ROW_INDEX: row_index(valid),
            "unit_id": _ids(valid[unit_id], as_text=True),
            "influence": fit.values,
        },
        columns=INFLUENCE_COLUMNS,
        copy=False,  # the fit's arrays, not a consolidated copy (a 1e7-row table is 0.2 GB)
    )


def _ids(column: pd.Series, *, as_text: bool) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The unit ids a per-row table stores: pandas' text kept as it is (Arrow-backed text has no
    Python object per id: 0.65 GB of objects for 1e7 ids), else the values (``as_text``: as str)."""
    if isinstance(column.dtype, pd.StringDtype):
        text: pd.api.extensions.ExtensionArray = column.array
        return text
    values: np.ndarray = column.astype(str).to_numpy() if as_text else column.to_numpy()
    return values


def row_index(valid: pd.DataFrame) -> np.ndarray:
    """The rows' ``row_index`` when the frame carries one, else their positions."""
    return valid[ROW_INDEX].to_numpy() if ROW_INDEX in valid.columns else np.arange(len(valid))


def propensity_coefficients(model: PropensityModel | None) -> pd.DataFrame:
    """The propensity model's coefficients by term."""
    if model is None:
        return pd.DataFrame(columns=["term", "coefficient"])
    return model.coefficients.rename_axis("term").reset_index(name="coefficient")


def score_table(
    valid: pd.DataFrame, unit_id: str, treatment: np.ndarray, model: PropensityModel | None
) -> pd.DataFrame:
    """Each row's raw and used (bounded) propensity score, and whether the policy keeps it."""
    if model is None:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.DataFrame(
        {
            ROW_INDEX: row_index(valid),
            "unit_id": _ids(valid[unit_id], as_text=False),
            "treatment": treatment,
            "propensity": model.scores,
            "used_propensity": model.used_scores,
            "kept": model.keep,
        },
        copy=False,  # the model's arrays, not a consolidated copy
    )


def outcome_coefficients(model: OutcomeModel | None) -> pd.DataFrame:
    """Each arm's regression coefficients, control first."""
    if model is None:
        return pd.DataFrame(columns=["arm", "term", "coefficient"])
    arms = [
        coefficients.rename_axis("term").reset_index(name="coefficient").assign(arm=arm)
        for arm, coefficients in (
            ("control", model.coefficients_control),
            ("treated", model.coefficients_treated),
        )
    ]
    return pd.concat(arms)[["arm", "term", "coefficient"]]


def predictions(valid: pd.DataFrame, model: OutcomeModel | None) -> pd.DataFrame:
    """Each row's predicted outcome under control (mu0) and under treatment (mu1)."""
    if model is None:
        return pd.DataFrame(columns=[ROW_INDEX, "mu0", "mu1"])
    return pd.DataFrame({ROW_INDEX: row_index(valid), "mu0": model.mu0, "mu1": model.mu1}, copy=False)
