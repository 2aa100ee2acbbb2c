"""A study's effects by segment in the library: its modifiers and fixed bins, one batch's segments, the
pooled multiplicity rule, the fusion over admitted batches, the shared-unit inflation, the memo section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from assimilate import causal_kalman
from assimilate.design.plan import AnalysisPlan
from assimilate.diagnostics.heterogeneity import segment_differences
from assimilate.filters.segments import segment_filter
from assimilate.report.memo import decision_memo_markdown
from assimilate.report.memo_inputs import DesignSummary, MemoInputs
from assimilate.report.who_benefits import WhoBenefits
from assimilate.segment_study import (
    batch_segments,
    effects_from_table,
    fuse_segments,
    modifiers_of,
    pooled_differences,
    segment_table,
    shared_unit_inflation,
)


def plan(**changes: object) -> AnalysisPlan:
    base: dict[str, object] = {
        "unit_id": "u",
        "treatment": "d",
        "outcome": "y",
        "outcome_type": "continuous",
        "design": {"kind": "randomized"},
        "covariates": ["x"],
        "categorical": {"region": ["north", "south", "east"]},
        "primary_estimator": "difference_in_means",
        "process_var": 0.0,
        "causal_graph": {"roles": {"region": "effect_modifier", "x": "effect_modifier"}},
        "segments": {"bins": 3},
    }
    return AnalysisPlan.model_validate({**base, **changes})


def rows(rng: np.random.Generator, n: int = 1200, east: float = 1.0) -> pd.DataFrame:
    region = rng.choice(["north", "south", "east"], n)
    d = rng.binomial(1, 0.5, n)
    x = rng.standard_normal(n)
    y = d * np.where(region == "east", east, 0.5) + 0.3 * x + rng.standard_normal(n)
    return pd.DataFrame({"u": range(n), "region": region, "x": x, "d": d, "y": y})


def test_bins_are_the_first_batch_quantiles_or_the_given_edges_and_a_single_bin_is_named() -> None:
    rng = np.random.default_rng(0)
    first = rows(rng)
    region, x = modifiers_of(plan(), first)
    assert (region.kind, region.levels, region.edges) == ("categorical", ("north", "south", "east"), None)
    assert x.kind == "binned" and x.edges is not None
    np.testing.assert_allclose(x.edges[1:-1], np.quantile(first["x"], [1 / 3, 2 / 3]), rtol=1e-12)
    assert (x.edges[0], x.edges[-1]) == (-math.inf, math.inf)
    (_, given) = modifiers_of(plan(segments={"edges": {"x": [0.0]}}))  # no batch needed
    assert given.edges == (-math.inf, 0.0, math.inf)
    with pytest.raises(ValueError, match="effect modifier 'x': its bins are cut from the first batch"):
        modifiers_of(plan())


def test_a_segment_is_the_subgroup_difference_in_means_and_the_table_round_trips() -> None:
    rng = np.random.default_rng(1)
    batch = rows(rng)
    found = batch_segments(batch, plan(), modifiers_of(plan(), batch), batch="b1")
    east = batch[batch["region"] == "east"]
    dim = east.loc[east["d"] == 1, "y"].mean() - east.loc[east["d"] == 0, "y"].mean()
    fit = dict(zip(found["region"].labels, found["region"].segments, strict=True))["east"].estimate
    assert fit is not None and fit.estimate == pytest.approx(dim, rel=1e-12)
    back = effects_from_table(segment_table(found).assign(partition_key="b1"))
    for column, effects in found.items():
        assert back[column].labels == effects.labels and back[column].edges == effects.edges
        for a, b in zip(back[column].segments, effects.segments, strict=True):
            assert a.estimate is not None and b.estimate is not None
            assert (a.estimate.estimate, a.estimate.std_error) == (b.estimate.estimate, b.estimate.std_error)


@pytest.mark.parametrize(("rule", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_the_multiplicity_rule_adjusts_every_segment_of_every_modifier_together(
    rule: str, method: str
) -> None:
    rng = np.random.default_rng(2)
    batch = rows(rng)
    study = plan(segments={"bins": 3, "multiplicity": rule})
    found = batch_segments(batch, study, modifiers_of(study, batch), batch="b1")
    pooled = pooled_differences(found, study.segment_settings)
    raw = np.concatenate([segment_differences(found[m]).p_value for m in ("region", "x")])
    np.testing.assert_allclose(pooled.table["p_value"], raw, rtol=1e-12)
    np.testing.assert_allclose(
        pooled.table["adjusted_p_value"], multipletests(raw, method=method)[1], rtol=1e-10
    )
    assert pooled.verdict.failed and ("region", "east") in pooled.flagged
    assert "region = east" in pooled.verdict.reason and "adjusted p" in pooled.verdict.reason
    # The forest plot marks what the family's rule flags, modifier by modifier.
    for column in ("region", "x"):
        marked = pooled.for_modifier(column)
        assert marked is not None
        assert {(column, s) for s in marked.flagged} == {f for f in pooled.flagged if f[0] == column}
    # Alone, one modifier's adjustment is the library's own check.
    alone = pooled_differences({"region": found["region"]}, study.segment_settings)
    correction = "holm" if rule == "holm" else "benjamini_hochberg"
    expected = segment_differences(found["region"], correction=correction).adjusted_p_value  # type: ignore[arg-type]
    np.testing.assert_allclose(alone.table["adjusted_p_value"], expected, rtol=1e-12)


def test_no_modifier_with_two_segments_is_not_assessed_with_the_reasons() -> None:
    rng = np.random.default_rng(3)
    batch = rows(rng, n=60)  # about 10 rows per arm and region: every segment too small
    study = plan(segments={"edges": {"x": [0.0]}})
    found = batch_segments(batch.iloc[:30], study, modifiers_of(study), batch="b1")
    pooled = pooled_differences(found, study.segment_settings)
    assert pooled.verdict.status == "undefined" and pooled.flagged == ()
    assert "needs at least 10 per arm" in pooled.verdict.reason


def test_fusion_skips_excluded_batches_and_inflates_standard_errors() -> None:
    table = pd.DataFrame(
        {
            "partition_key": ["b1", "b1", "b2", "b2", "b3", "b3"],
            "modifier": "region",
            "segment": ["a", "b"] * 3,
            "position": [0, 1] * 3,
            "assessed": True,
            "estimate": [0.5, 0.3, 9.0, 9.0, 0.7, 0.2],
            "std_error": [0.1, 0.2, 0.1, 0.1, 0.1, 0.2],
        }
    )
    (fused,) = fuse_segments(table, ["b1", "b2", "b3"], [False, True, False], se_inflation=2.0).values()
    y = np.array([[0.5, 0.3], [np.nan, np.nan], [0.7, 0.2]])
    se = 2.0 * np.array([[0.1, 0.2], [np.nan, np.nan], [0.1, 0.2]])
    direct = segment_filter(y, se, segments=["a", "b"], labels=["b1", "b2", "b3"], between_var="integrated")
    np.testing.assert_allclose(fused.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(fused.upper, direct.upper, rtol=1e-12)
    with pytest.raises(ValueError, match="se_inflation must be a finite number >= 1"):
        fuse_segments(table, ["b1"], [False], se_inflation=0.5)


def test_the_shared_unit_inflation_is_the_square_root_of_the_design_effect() -> None:
    y, se = [0.1, 0.2, np.nan, 0.15], [0.1, 0.2, np.nan, 0.1]
    independent = causal_kalman([0.1, 0.2, 0.15], [0.1, 0.2, 0.1], process_var=0.0, diffuse=True)
    var = float(independent.posterior_var[-1])
    excluded = [False, False, True, False]
    assert shared_unit_inflation(y, se, excluded, fused_var=var) == pytest.approx(1.0, rel=1e-12)
    assert shared_unit_inflation(y, se, excluded, fused_var=4 * var) == pytest.approx(2.0, rel=1e-12)
    assert shared_unit_inflation(y, se, excluded, fused_var=var / 2) == 1.0  # never narrower
    assert shared_unit_inflation(y, se, [True] * 4, fused_var=var) == 1.0


def memo(segments: WhoBenefits | None) -> str:
    res = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
    inputs = MemoInputs(
        study="demo",
        result=res,
        design=DesignSummary(kind="randomized"),
        latest_estimates=(),
        primary_estimator="difference_in_means",
        segments=segments,
    )
    return decision_memo_markdown(inputs)


def test_the_memo_says_who_benefits_only_for_a_study_with_segments() -> None:
    fused = pd.DataFrame(
        {
            "batch": ["m2"] * 3,
            "modifier": "region",
            "segment": ["north", "south", "east"],
            "mean": [0.5, 0.52, 0.95],
            "lower": [0.3, 0.32, 0.7],
            "upper": [0.7, 0.72, 1.2],
            "borrowed_share": [0.1, 0.1, 0.2],
            "alpha": 0.05,
        }
    )
    tests = pd.DataFrame(
        {
            "modifier": "region",
            "segment": ["north", "south", "east"],
            "difference": [-0.2, -0.18, 0.44],
            "adjusted_p_value": [0.2, 0.2, 0.001],
            "differs": [False, False, True],
        }
    )
    found = WhoBenefits.from_tables(fused, tests, multiplicity="holm", level=0.05)
    text = memo(found)
    section = text[text.index("## Who benefits") :].split("\n## ")[0]
    assert "region = east (fused effect +0.950" in section and "adjusted p 0.001" in section
    assert "Holm's rule" in section and "| region | east | +0.950 |" in section
    calm = memo(WhoBenefits.from_tables(fused, tests.assign(differs=False), multiplicity="bh", level=0.05))
    assert "No segment's effect differs from the rest beyond chance under the Benjamini-Hochberg rule" in calm
    assert "Who benefits" not in memo(None)
    assert WhoBenefits.from_tables(fused.iloc[0:0], tests, multiplicity="holm", level=0.05) is None
