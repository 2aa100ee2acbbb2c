"""An estimate's own interval and p-value follow the degrees of freedom its standard error carries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from assimilate.estimators import EffectEstimate, difference_in_means
from assimilate.estimators.variance import with_standard_error


def test_without_df_the_interval_and_p_value_are_normal() -> None:
    est = EffectEstimate(estimate=0.5, std_error=0.2, n_treated=50, n_control=50, method="m", se_method="s")
    assert est.df is None
    assert est.conf_int(0.1) == pytest.approx(
        (0.5 - stats.norm.ppf(0.95) * 0.2, 0.5 + stats.norm.ppf(0.95) * 0.2)
    )
    assert est.p_value == pytest.approx(2 * stats.norm.sf(2.5))


def test_a_clustered_se_gives_the_t_interval_statsmodels_gives() -> None:
    rng = np.random.default_rng(5)
    school = np.repeat(np.arange(12), 30)
    d = (school % 2).astype(float)
    y = 0.4 * d + rng.standard_normal(12)[school] + rng.standard_normal(len(school))
    frame = pd.DataFrame({"d": d, "y": y, "school": school})
    clustered = with_standard_error(
        difference_in_means(frame, treatment="d", outcome="y"),
        frame,
        treatment="d",
        outcome="y",
        cluster="school",
        se_type="CR1",
    )
    fit = sm.OLS(frame["y"], sm.add_constant(frame["d"])).fit(
        cov_type="cluster", cov_kwds={"groups": frame["school"]}, use_t=True
    )
    assert clustered.df == 11
    assert clustered.std_error == pytest.approx(fit.bse["d"], rel=1e-8)
    assert np.asarray(clustered.conf_int(0.05)) == pytest.approx(
        fit.conf_int(0.05).loc["d"].to_numpy(), rel=1e-8
    )
    assert clustered.p_value == pytest.approx(fit.pvalues["d"], rel=1e-8)
    assert EffectEstimate.from_dict(clustered.to_dict()).conf_int() == clustered.conf_int()
