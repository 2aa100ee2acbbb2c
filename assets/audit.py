"""The audit trail: every posterior update records what produced it.

One row per update in ``<study>.audit_trail`` (keyed by the run that made it): the study config
(its hash and full text, so the estimand card, causal graph, thresholds and seed are all there),
the code version and a fingerprint of the project's source, the hash of every input file, every
check verdict, which batches were excluded and why, and the posterior it produced with the
always-valid interval beside it. The analysts' acknowledged exclusions are part of the study
config (``acknowledged_exclusions`` in ``config_json``), so each update records those it was made under.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from functools import cache

import pandas as pd

from assets.common import code_version
from assimilate.result import AssimilationResult
from assimilate.sequential import ConfidenceSequence
from resources.project import PROJECT_ROOT
from resources.study import StudyConfig

AUDIT_TABLE = "audit_trail"
SOURCE_PACKAGES = ("assimilate", "assets", "checks", "orchestration", "resources")


@cache
def source_fingerprint() -> str:
    """sha256 over the project's Python source (path and bytes), computed once per process."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _by_batch(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[dict[str, object]]]:
    if frame.empty:
        return {}
    records: dict[str, list[dict[str, object]]] = {}
    for row in frame.sort_values("partition_key").to_dict("records"):
        records.setdefault(str(row["partition_key"]), []).append({c: _plain(row.get(c)) for c in columns})
    return records


def _plain(value: object) -> object:
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value.item() if hasattr(value, "item") else value


def audit_record(
    study: StudyConfig,
    *,
    run_id: str,
    files: pd.DataFrame,
    verdicts: pd.DataFrame,
    observed: pd.DataFrame,
    result: AssimilationResult | None,
    recomputed_from: str | None,
    always_valid: ConfidenceSequence | None = None,
) -> pd.DataFrame:
    """One audit row for a posterior update (columns are documented in the module docstring)."""
    excluded = observed[observed["excluded"].astype(bool)] if not observed.empty else observed
    config = study.model_dump(mode="json")
    row: dict[str, object] = {
        "run_id": run_id,
        "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "config_hash": study.config_hash,
        "config_json": json.dumps(config, sort_keys=True),
        "estimand_card_json": json.dumps(config.get("estimand_card"), sort_keys=True),
        "causal_graph_json": json.dumps(config.get("causal_graph"), sort_keys=True),
        "thresholds_json": json.dumps(config["thresholds"], sort_keys=True),
        "seed": study.seed,
        "code_version": code_version(study),
        "source_sha256": source_fingerprint(),
        "input_files_json": json.dumps(_by_batch(files, ["file_name", "sha256", "size_bytes"])),
        "verdicts_json": json.dumps(
            _by_batch(verdicts, ["check_name", "severity", "status", "value", "threshold", "reason"])
        ),
        "excluded_json": json.dumps(dict(zip(excluded["batch"], excluded["exclusion_reason"], strict=True))),
        "n_batches": len(observed),
        "recomputed_from": recomputed_from,
        "posterior_mean": None,
        "posterior_sd": None,
        "ci_lower": None,
        "ci_upper": None,
        "ci_level": None,
        "always_valid_lower": None,
        "always_valid_upper": None,
        "always_valid_correlated": None,
    }
    if result is not None and result.n_batches:
        lower, upper = result.final_ci
        row |= {
            "posterior_mean": result.final_mean,
            "posterior_sd": result.final_sd,
            "ci_lower": lower,
            "ci_upper": upper,
            "ci_level": result.level,
        }
    if always_valid is not None and len(always_valid.labels):
        lower, upper = always_valid.conf_int()
        row |= {
            "always_valid_lower": _finite(lower),
            "always_valid_upper": _finite(upper),
            "always_valid_correlated": always_valid.correlated,
        }
    return pd.DataFrame([row])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
