"""Study design as code: the estimand card, the causal DAG and what it allows.

:mod:`~assimilate.design.card` holds the schema (estimand card, declared graph and roles);
:mod:`~assimilate.design.dag` the graph logic (forbidden controls, d-separation, backdoor
adjustment sets); :mod:`~assimilate.design.shortlist` the estimators a design supports;
:mod:`~assimilate.design.render` the graph as DOT source.
"""

from assimilate.design.card import CausalGraphSpec, Estimand, EstimandCard, VariableRole
from assimilate.design.dag import AdjustmentCheck, CausalDAG, Conflict, DesignError
from assimilate.design.render import to_dot
from assimilate.design.shortlist import METHODS, DesignKind, method_shortlist

__all__ = [
    "METHODS",
    "AdjustmentCheck",
    "CausalDAG",
    "CausalGraphSpec",
    "Conflict",
    "DesignError",
    "DesignKind",
    "Estimand",
    "EstimandCard",
    "VariableRole",
    "method_shortlist",
    "to_dot",
]
