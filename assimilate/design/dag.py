"""The study's causal DAG: forbidden controls, d-separation and backdoor adjustment sets.

A :class:`CausalDAG` is built from a :class:`~assimilate.design.card.CausalGraphSpec` and the
study's treatment ``T`` and outcome ``Y``. A covariate set ``Z`` identifies the effect by
adjustment when it meets Pearl's backdoor criterion: no element of ``Z`` descends from ``T``, and
``T`` and ``Y`` are d-separated by ``Z`` in the graph without ``T``'s outgoing edges.

Example
-------
>>> spec = CausalGraphSpec(edges=[("x", "d"), ("x", "y"), ("d", "m"), ("m", "y")])
>>> dag = CausalDAG(spec, treatment="d", outcome="y")
>>> sorted(dag.descendants_of_treatment), dag.adjustment_set()
(['m', 'y'], ('x',))
>>> dag.check_adjustment(["x", "m"]).reason
"'m' is a descendant of the treatment 'd' (d -> m), so it cannot be a control"
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import networkx as nx

from assimilate.design.card import CausalGraphSpec, VariableRole

_PRE_TREATMENT_ROLES = ("confounder", "precision", "effect_modifier", "instrument")


@dataclass(frozen=True)
class Conflict:
    """One broken design rule: the offending variable and the rule, as a sentence about it.

    Attributes
    ----------
    variable : str
        The variable at fault.
    rule : str
        What is wrong, phrased to follow the quoted variable name.
    section : {"edges", "roles"}
        The part of the causal graph the conflict is found in.
    """

    variable: str
    rule: str
    section: str = "roles"

    @property
    def message(self) -> str:
        """``'variable' rule``."""
        return f"{self.variable!r} {self.rule}"


class DesignError(ValueError):
    """The causal graph, the role table or a covariate list contradict each other.

    The message has one ``'variable' rule`` line per conflict; ``conflicts`` holds them as data.
    """

    def __init__(self, *conflicts: Conflict) -> None:
        self.conflicts = conflicts
        super().__init__("\n".join(c.message for c in conflicts))


@dataclass(frozen=True)
class AdjustmentCheck:
    """Whether a covariate set satisfies the backdoor criterion, and why not.

    Attributes
    ----------
    covariates : tuple of str
        The set checked.
    valid : bool
        True when it holds no descendant of the treatment and blocks every backdoor path.
    forbidden : tuple of str
        Members that are the treatment, the outcome or a descendant of the treatment.
    unknown : tuple of str
        Members absent from the graph: whether they block or open a path cannot be decided.
    open_path : tuple of str or None
        A backdoor path from the treatment to the outcome left open by the set (nodes in order).
    reason : str
        The verdict as a sentence.
    """

    covariates: tuple[str, ...]
    valid: bool
    forbidden: tuple[str, ...]
    unknown: tuple[str, ...]
    open_path: tuple[str, ...] | None
    reason: str


def _implied_edges(role: VariableRole, v: str, t: str, y: str) -> list[tuple[str, str]]:
    """The canonical edges of a role, for a variable declared only in the role table."""
    table: dict[str, list[tuple[str, str]]] = {
        "confounder": [(v, t), (v, y)],
        "precision": [(v, y)],
        "effect_modifier": [(v, y)],
        "mediator": [(t, v), (v, y)],
        "post_treatment": [(t, v)],
        "collider": [(t, v), (y, v)],
        "instrument": [(v, t)],
        "outcome_proxy": [(y, v)],
    }
    return table.get(role, [])


class CausalDAG:
    """A study's causal graph with its treatment and outcome (immutable).

    Parameters
    ----------
    spec : CausalGraphSpec
        Declared edges and/or variable roles.
    treatment, outcome : str
        The study's treatment and outcome columns.

    Raises
    ------
    DesignError
        On a cycle (named), or when a declared role contradicts the edges (see Notes).

    Notes
    -----
    The edge ``treatment -> outcome`` is always present: it is the effect under study. A variable
    named only in the role table gets its role's canonical edges (confounder ``v -> T, v -> Y``;
    precision and effect modifier ``v -> Y``; mediator ``T -> v -> Y``; post-treatment ``T -> v``;
    collider ``T -> v <- Y``; instrument ``v -> T``; outcome proxy ``Y -> v``). A variable in the
    edges that also has a role must play it: a mediator or post-treatment variable descends from
    ``T`` (a mediator also causes ``Y``); a confounder, precision variable, effect modifier or
    instrument does not; a precision variable causes ``Y`` other than through ``T`` and does not
    cause ``T``; an instrument causes ``T`` and reaches ``Y`` only through ``T`` (the exclusion
    restriction; its independence of unobserved confounders is an assumption no declared graph can
    check); a collider has at least two causes; an outcome proxy descends from ``Y``.
    """

    def __init__(self, spec: CausalGraphSpec, *, treatment: str, outcome: str) -> None:
        if treatment == outcome:
            raise DesignError(Conflict(treatment, "is both the treatment and the outcome", "edges"))
        graph = nx.DiGraph()
        graph.add_edge(treatment, outcome)
        graph.add_edges_from(spec.edges)
        in_edges = set(graph.nodes)
        for variable, role in spec.roles.items():
            if variable not in in_edges:
                graph.add_node(variable)
                graph.add_edges_from(_implied_edges(role, variable, treatment, outcome))
        try:
            cycle = [cause for cause, _ in nx.find_cycle(graph)]  # deterministic: insertion order
        except nx.NetworkXNoCycle:
            cycle = []
        if cycle:
            loop = " -> ".join([*cycle, cycle[0]])
            raise DesignError(
                Conflict(cycle[0], f"is on the cycle {loop}; a causal graph must be acyclic", "edges")
            )
        self._graph = nx.freeze(graph)
        self._spec = spec
        self._treatment = treatment
        self._outcome = outcome
        self._descendants = frozenset(nx.descendants(graph, treatment))
        backdoor = nx.DiGraph(graph)
        backdoor.remove_edges_from(list(graph.out_edges(treatment)))
        self._backdoor = nx.freeze(backdoor)
        conflicts = [
            Conflict(variable, rule)
            for variable, role in spec.roles.items()
            for rule in self._role_rules(variable, role)
        ]
        if conflicts:
            raise DesignError(*conflicts)

    @property
    def treatment(self) -> str:
        """The treatment node."""
        return self._treatment

    @property
    def outcome(self) -> str:
        """The outcome node."""
        return self._outcome

    @property
    def spec(self) -> CausalGraphSpec:
        """The declared graph this DAG was built from."""
        return self._spec

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every variable of the graph, sorted."""
        return tuple(sorted(self._graph.nodes))

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Every ``(cause, effect)`` edge, declared or implied by a role, sorted."""
        return tuple(sorted(self._graph.edges))

    @property
    def roles(self) -> Mapping[str, VariableRole]:
        """The declared role table (read-only)."""
        return MappingProxyType(dict(self._spec.roles))

    @property
    def graph(self) -> nx.DiGraph:
        """The graph as a frozen networkx ``DiGraph``."""
        return self._graph

    @property
    def descendants_of_treatment(self) -> frozenset[str]:
        """Variables caused, directly or not, by the treatment: never valid controls."""
        return self._descendants

    @property
    def instruments(self) -> tuple[str, ...]:
        """Variables declared with role ``instrument`` (their exclusion restriction holds)."""
        return tuple(sorted(v for v, role in self._spec.roles.items() if role == "instrument"))

    def role_of(self, variable: str) -> str | None:
        """The declared role of ``variable``; ``"treatment"``/``"outcome"`` for those; else None."""
        if variable == self._treatment:
            return "treatment"
        if variable == self._outcome:
            return "outcome"
        return self._spec.roles.get(variable)

    def parents(self, variable: str) -> tuple[str, ...]:
        """Direct causes of ``variable``, sorted."""
        self._require([variable])
        return tuple(sorted(self._graph.predecessors(variable)))

    def causes(self, cause: str, effect: str) -> bool:
        """Whether a directed path leads from ``cause`` to ``effect``."""
        self._require([cause, effect])
        return cause != effect and bool(nx.has_path(self._graph, cause, effect))

    def format_path(self, path: Sequence[str]) -> str:
        """A path with the direction of each edge, e.g. ``d <- x -> y``."""
        text = path[0]
        for a, b in itertools.pairwise(path):
            text += f" -> {b}" if self._graph.has_edge(a, b) else f" <- {b}"
        return text

    def path_from_treatment(self, variable: str) -> tuple[str, ...]:
        """A shortest directed path from the treatment to one of its descendants."""
        if variable not in self._descendants:
            raise DesignError(Conflict(variable, f"is not a descendant of the treatment {self._treatment!r}"))
        return tuple(nx.shortest_path(self._graph, self._treatment, variable))

    def is_d_separated(self, x: Iterable[str], y: Iterable[str], given: Iterable[str] = ()) -> bool:
        """Whether ``given`` d-separates the node sets ``x`` and ``y`` (disjoint from ``given``)."""
        xs, ys, zs = set(x), set(y), set(given)
        self._require([*xs, *ys, *zs])
        return bool(nx.is_d_separator(self._graph, xs, ys, zs))

    def open_backdoor_path(self, covariates: Iterable[str]) -> tuple[str, ...] | None:
        """A backdoor path from the treatment to the outcome that ``covariates`` leave open.

        Only the covariates in the graph (other than the treatment and outcome) condition.
        Returns None when every backdoor path is blocked; otherwise the shortest open path.
        """
        return self._open_path(self._treatment, covariates)

    def open_instrument_path(self, instrument: str, covariates: Iterable[str]) -> tuple[str, ...] | None:
        """A path from ``instrument`` to the outcome that bypasses the treatment, open given ``covariates``.

        The exclusion restriction of a conditional instrument (Pearl 2009, def. 7.4.1): the
        instrument is d-separated from the outcome given the covariates in the graph without the
        treatment's outgoing edges. Returns None when it holds; otherwise the shortest open path.
        """
        self._require([instrument])
        return self._open_path(instrument, covariates)

    def _open_path(self, source: str, covariates: Iterable[str]) -> tuple[str, ...] | None:
        """The shortest path from ``source`` to the outcome open given ``covariates``.

        In the graph without the treatment's outgoing edges; None when they d-separate the two.
        """
        y, backdoor = self._outcome, self._backdoor
        z = {c for c in covariates if c in self._graph} - {source, self._treatment, y}
        if nx.is_d_separator(backdoor, {source}, {y}, z):
            return None
        opening = z.union(*(nx.ancestors(backdoor, c) for c in z))
        for path in nx.shortest_simple_paths(backdoor.to_undirected(as_view=True), source, y):
            if all(
                self._passes(a, v, b, z, opening) for a, v, b in zip(path, path[1:], path[2:], strict=False)
            ):
                return tuple(path)
        raise AssertionError("d-separation found an open path that path enumeration did not")

    def _passes(self, a: str, v: str, b: str, z: set[str], opening: set[str]) -> bool:
        if self._backdoor.has_edge(a, v) and self._backdoor.has_edge(b, v):
            return v in opening  # a collider opens when it or one of its descendants is conditioned on
        return v not in z

    def check_adjustment(self, covariates: Iterable[str]) -> AdjustmentCheck:
        """Test ``covariates`` against the backdoor criterion.

        Parameters
        ----------
        covariates : iterable of str
            The proposed adjustment set.

        Returns
        -------
        AdjustmentCheck
            The verdict with the forbidden members, unknown members and an open path, if any.
        """
        z = tuple(dict.fromkeys(covariates))
        reasons: list[str] = []
        forbidden = []
        for c in z:
            if c == self._treatment:
                reasons.append(f"{c!r} is the treatment itself")
            elif c == self._outcome:
                reasons.append(f"{c!r} is the outcome")
            elif c in self._descendants:
                via = self.format_path(self.path_from_treatment(c))
                reasons.append(
                    f"{c!r} is a descendant of the treatment {self._treatment!r} ({via}), "
                    "so it cannot be a control"
                )
            else:
                continue
            forbidden.append(c)
        unknown = tuple(c for c in z if c not in self._graph)
        reasons.extend(
            f"{c!r} is not in the causal graph, so whether it blocks or opens a path is unknown"
            for c in unknown
        )
        path = self.open_backdoor_path(z)
        if path is not None:
            given = f"given {sorted(z)}" if z else "with no covariates"
            reasons.append(f"the backdoor path {self.format_path(path)} is open {given}")
        valid = not reasons
        if valid:
            reasons.append(
                f"blocks every backdoor path from {self._treatment!r} to {self._outcome!r} "
                "and holds no descendant of the treatment"
            )
        return AdjustmentCheck(z, valid, tuple(forbidden), unknown, path, "; ".join(reasons))

    def optimal_adjustment_set(self) -> tuple[str, ...]:
        r"""The O-set: parents of the causal nodes that are not themselves forbidden (sorted).

        Notes
        -----
        With ``cn`` the nodes on directed paths from ``T`` to ``Y`` (``Y`` included) and
        ``forb = {T} ∪ cn ∪ de(cn)``, the O-set is ``pa(cn) \ forb`` (Henckel, Perković and
        Maathuis, 2022). It is a valid adjustment set whenever one exists among all the graph's
        nodes, and the most precise one: it keeps the outcome's other causes (precision
        variables) and drops pure causes of the treatment (instruments), which only cost variance.
        For a single treatment it holds no descendant of ``T``, so it also meets the backdoor
        criterion.
        """
        g, t, y = self._graph, self._treatment, self._outcome
        causal = (self._descendants & (nx.ancestors(g, y) | {y})) | {y}
        forbidden = {t} | causal | set().union(*(nx.descendants(g, c) for c in causal))
        parents = set().union(*(g.predecessors(c) for c in causal))
        return tuple(sorted(parents - forbidden))

    def minimal_adjustment_set(self, observed: Iterable[str] | None = None) -> tuple[str, ...] | None:
        """A minimal valid backdoor set among ``observed`` (default: every node), or None."""
        candidates = self._candidates(observed) - self._descendants
        found = nx.find_minimal_d_separator(
            self._backdoor, self._treatment, self._outcome, restricted=candidates
        )
        return None if found is None else tuple(sorted(found))

    def adjustment_set(self, observed: Iterable[str] | None = None) -> tuple[str, ...] | None:
        """The adjustment set to use: the O-set if all of it is observed, else a minimal set.

        Parameters
        ----------
        observed : iterable of str, optional
            Variables measured in the data; by default every node of the graph.

        Returns
        -------
        tuple of str or None
            A valid backdoor set (sorted), or None when no valid set exists among ``observed``.
        """
        optimal = set(self.optimal_adjustment_set())
        if optimal <= self._candidates(observed):
            return tuple(sorted(optimal))
        return self.minimal_adjustment_set(observed)

    def _candidates(self, observed: Iterable[str] | None) -> set[str]:
        nodes = set(self._graph.nodes) if observed is None else set(observed) & set(self._graph.nodes)
        return nodes - {self._treatment, self._outcome}

    def _require(self, variables: Iterable[str]) -> None:
        missing = [v for v in variables if v not in self._graph]
        if missing:
            raise DesignError(
                *(Conflict(v, "is not a variable of the causal graph", "edges") for v in missing)
            )

    def _role_rules(self, v: str, role: VariableRole) -> list[str]:
        """The rules ``v`` breaks by having ``role`` in this graph (empty when consistent)."""
        t, y, g = self._treatment, self._outcome, self._graph
        if role in ("treatment", "outcome"):
            study = t if role == "treatment" else y
            return [] if v == study else [f"has role {role!r} but the study's {role} is {study!r}"]
        if v in (t, y):
            return [f"is the study's {'treatment' if v == t else 'outcome'}, not a {role}"]
        rules = []
        descends = v in self._descendants
        causes_outcome = v in nx.ancestors(g, y)
        if role in ("mediator", "post_treatment") and not descends:
            rules.append(f"has role {role!r} but is not a descendant of the treatment {t!r} in the graph")
        if role == "mediator" and not causes_outcome:
            rules.append(f"has role 'mediator' but does not cause the outcome {y!r} in the graph")
        if role in _PRE_TREATMENT_ROLES and descends:
            via = self.format_path(self.path_from_treatment(v))
            rules.append(
                f"has role {role!r} but is a descendant of the treatment {t!r} ({via}): post-treatment"
            )
        if role == "precision" and not nx.has_path(nx.restricted_view(g, [t], []), v, y):
            rules.append(
                f"has role 'precision' but causes the outcome {y!r} only through the treatment, if at all"
            )
        if role == "precision" and v in nx.ancestors(g, t):
            rules.append(f"has role 'precision' but also causes the treatment {t!r}: it is a confounder")
        if role == "instrument":
            rules.extend(self._instrument_rules(v))
        if role == "collider" and g.in_degree(v) < 2:
            rules.append("has role 'collider' but fewer than two arrows point into it in the graph")
        if role == "outcome_proxy" and v not in nx.descendants(g, y):
            rules.append(f"has role 'outcome_proxy' but is not a descendant of the outcome {y!r}")
        return rules

    def _instrument_rules(self, v: str) -> list[str]:
        t, y = self._treatment, self._outcome
        rules = []
        if v not in nx.ancestors(self._graph, t):
            rules.append(f"has role 'instrument' but does not cause the treatment {t!r}")
        without_treatment = nx.restricted_view(self._graph, [t], [])
        if nx.has_path(without_treatment, v, y):
            bypass = self.format_path(nx.shortest_path(without_treatment, v, y))
            rules.append(
                f"has role 'instrument' but reaches the outcome {y!r} other than through {t!r} ({bypass})"
            )
        return rules
