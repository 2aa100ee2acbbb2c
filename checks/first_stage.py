"""The first stage keeps its sign: an instrument that pushed the treatment up must not now push it down.

An instrument's first-stage coefficient (its effect on the treatment, given the covariates) whose
sign flips between batches means the instrument no longer works as it did (a changed encouragement,
a rollout reversed, a data error), so the batches' LATEs are about different compliers. The check
compares this batch's coefficient of each instrument with the precision-weighted mean of the earlier
batches' (stored in ``batch_effects``); it fails (WARN) when the two are of opposite sign and each
differs from zero at the 5% level, so sampling noise around a strong first stage does not trip it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from scipy import stats

from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import EffectEstimate
from assimilate.estimators.iv_diagnostics import IV_METHOD
from resources.study import StudyConfig

ALPHA = 0.05
RULE = "no instrument's first stage is significant with the opposite sign of the earlier batches' (5% level)"


def first_stage_sign_verdict(
    study: StudyConfig, history: pd.DataFrame, estimate: EffectEstimate | None, batch: str
) -> tuple[Verdict, dict[str, Any]]:
    """This batch's first stage against the earlier batches' (``history``: stored ``batch_effects``)."""
    reason = study.design.not_assessed("first_stage_sign")
    if reason is None and estimate is None:
        reason = f"batch {batch}: no {IV_METHOD} estimate, so no first stage"
    earlier = _earlier_first_stages(history, batch) if reason is None else []
    if reason is None and not earlier:
        reason = f"batch {batch}: no earlier batch with a first stage to compare with"
    if reason is not None or estimate is None:
        return Verdict.undefined("first_stage_sign", threshold=0.0, rule=RULE, reason=reason or ""), {}
    now = estimate.diagnostics["first_stage"]
    critical = float(stats.norm.isf(ALPHA / 2))
    metadata: dict[str, Any] = {"earlier_batches": len(earlier)}
    flipped = []
    for name, coefficient in now["coefficients"].items():
        weights = [1.0 / e["std_errors"][name] ** 2 for e in earlier if e["std_errors"].get(name)]
        pooled = sum(w * e["coefficients"][name] for w, e in zip(weights, earlier, strict=False)) / sum(
            weights
        )
        pooled_se, se = 1.0 / math.sqrt(sum(weights)), now["std_errors"][name]
        metadata |= {f"first_stage_{name}": coefficient, f"first_stage_{name}_earlier": pooled}
        if (
            coefficient * pooled < 0
            and abs(coefficient) > critical * se
            and abs(pooled) > critical * pooled_se
        ):
            flipped.append(
                f"{name}: {coefficient:.3g} (SE {se:.2g}) against {pooled:.3g} (SE {pooled_se:.2g}) before"
            )
    first = next(iter(now["coefficients"].values()))
    verdict = Verdict.evaluate(
        "first_stage_sign",
        value=float(first),
        threshold=0.0,
        rule=RULE,
        passed=not flipped,
        reason=f"batch {batch}: the first stage changed sign: " + "; ".join(flipped) if flipped else "",
    )
    return verdict, metadata


def _earlier_first_stages(history: pd.DataFrame, batch: str) -> list[dict[str, Any]]:
    """The first-stage entries of earlier batches' usable 2SLS estimates."""
    if history.empty:
        return []
    rows = history[
        (history["method"] == IV_METHOD)
        & (history["error"].fillna("") == "")
        & (history["partition_key"].astype(str) < batch)
    ]
    stages = [json.loads(text).get("first_stage") or {} for text in rows["diagnostics_json"]]
    return [s for s in stages if s.get("coefficients") and s.get("std_errors")]
