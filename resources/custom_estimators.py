"""A study's own estimators, imported at load time: ``custom_estimators: {name: "package.module:function"}``.

The library never imports user code; the study file names the function and this module finds it:
the module imported, the function taken from it, held to the contract's keywords
(``assimilate.estimators.custom.contract_problem``: callable, accepting ``treatment``, ``outcome``,
``covariates``, ``estimand``, ``rng``). A target that fails is one ``custom_estimators.name:`` line of
the study's load error, so one broken study never stops the others (orchestration/study_folder.py).
The team's package must be importable by the code location (installed, or on its PYTHONPATH).
Modules are imported once per process (Python caches them): a changed estimator takes effect when
the code location reloads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from assimilate.estimators.custom import CustomEstimator, contract_problem


def resolve_custom_estimators(targets: Mapping[str, str]) -> tuple[dict[str, CustomEstimator], list[str]]:
    """Name -> function for every target that keeps the contract, and one problem line per one that does not."""
    functions: dict[str, CustomEstimator] = {}
    problems: list[str] = []
    for name, target in targets.items():
        function, reason = _resolve(target)
        if function is None:
            problems.append(f"custom_estimators.{name}: {target!r} {reason}")
        else:
            functions[name] = function
    return functions, problems


def _resolve(target: str) -> tuple[CustomEstimator | None, str]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the team's module: any failure on import is the reason, not a crash
        return None, f"cannot be imported: {type(error).__name__}: {error}"
    if not hasattr(module, attribute):
        return None, f"names nothing: module {module_name!r} has no attribute {attribute!r}"
    function = getattr(module, attribute)
    problem = contract_problem(function)
    return (None, problem) if problem is not None else (function, "")
