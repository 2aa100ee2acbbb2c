"""assimilate.design: forbidden controls, backdoor sets, role rules, shortlist and rendering on known DAGs."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from assimilate.design import (
    METHODS,
    CausalDAG,
    CausalGraphSpec,
    DesignError,
    method_shortlist,
    to_dot,
)
from assimilate.design.render import ROLE_STYLES
from resources.graphviz import PNG_SIGNATURE, GraphvizError, render_png

STUDIES = Path(__file__).resolve().parents[2] / "studies"
OUTREACH_CONFOUNDERS = ("company_size", "health_score", "prior_tickets", "region", "tenure_months")


def dag(
    edges: list[tuple[str, str]], roles: dict[str, str] | None = None, *, t: str = "d", y: str = "y"
) -> CausalDAG:
    spec = CausalGraphSpec.model_validate({"edges": edges, "roles": roles or {}})
    return CausalDAG(spec, treatment=t, outcome=y)


CONFOUNDER = [("x", "d"), ("x", "y"), ("d", "y")]
MEDIATOR = [("x", "d"), ("x", "y"), ("d", "m"), ("m", "y")]
M_BIAS = [("a", "d"), ("a", "m"), ("b", "m"), ("b", "y"), ("d", "y")]
INSTRUMENT = [("z", "d"), ("u", "d"), ("u", "y"), ("d", "y")]


def outreach_dag() -> CausalDAG:
    data = yaml.safe_load((STUDIES / "retention_outreach.yaml").read_text())
    return CausalDAG(
        CausalGraphSpec.model_validate(data["causal_graph"]), treatment="outreach", outcome="churn"
    )


# --- known DAGs ---------------------------------------------------------------------------------


def test_confounder_graph_needs_the_confounder() -> None:
    g = dag(CONFOUNDER)
    assert g.descendants_of_treatment == {"y"}
    unadjusted = g.check_adjustment([])
    assert not unadjusted.valid
    assert unadjusted.open_path == ("d", "x", "y")
    assert "the backdoor path d <- x -> y is open with no covariates" in unadjusted.reason
    assert g.check_adjustment(["x"]).valid
    assert g.adjustment_set() == ("x",)
    assert g.minimal_adjustment_set() == ("x",)


def test_mediator_is_a_forbidden_control() -> None:
    g = dag(MEDIATOR, {"m": "mediator", "x": "confounder"})
    assert g.descendants_of_treatment == {"m", "y"}
    check = g.check_adjustment(["x", "m"])
    assert not check.valid
    assert check.forbidden == ("m",)
    assert check.open_path is None
    assert check.reason == "'m' is a descendant of the treatment 'd' (d -> m), so it cannot be a control"
    assert g.optimal_adjustment_set() == ("x",)


def test_collider_caused_by_treatment_and_outcome_is_forbidden() -> None:
    g = dag([*CONFOUNDER, ("d", "c"), ("y", "c")], {"c": "collider"})
    assert g.descendants_of_treatment == {"c", "y"}
    assert g.check_adjustment(["x", "c"]).forbidden == ("c",)
    assert g.adjustment_set() == ("x",)


def test_conditioning_on_a_collider_opens_the_path_through_it() -> None:
    g = dag([("a", "c"), ("b", "c"), ("d", "y")], {"c": "collider"})
    assert g.is_d_separated(["a"], ["b"])
    assert not g.is_d_separated(["a"], ["b"], ["c"])
    chain = dag([("a", "b"), ("b", "c"), ("d", "y")])
    assert not chain.is_d_separated(["a"], ["c"])
    assert chain.is_d_separated(["a"], ["c"], ["b"])


def test_m_bias_node_is_invalid_alone_and_valid_with_a_parent() -> None:
    g = dag(M_BIAS)
    assert g.check_adjustment([]).valid  # no backdoor path is open to begin with
    alone = g.check_adjustment(["m"])
    assert not alone.valid
    assert alone.forbidden == () and alone.unknown == ()
    assert alone.open_path == ("d", "a", "m", "b", "y")
    assert "the backdoor path d <- a -> m <- b -> y is open given ['m']" in alone.reason
    assert g.check_adjustment(["m", "a"]).valid
    assert g.check_adjustment(["m", "b"]).valid
    assert g.optimal_adjustment_set() == ("b",)  # b causes the outcome: it adds precision
    assert g.minimal_adjustment_set() == ()
    assert g.adjustment_set(observed=["a", "m"]) == ()  # b unobserved: fall back to a minimal set


def test_instrument_is_left_out_of_the_optimal_set() -> None:
    g = dag(INSTRUMENT, {"z": "instrument", "u": "confounder"})
    assert g.instruments == ("z",)
    assert g.optimal_adjustment_set() == ("u",)
    assert g.check_adjustment(["z", "u"]).valid  # valid, only less precise
    assert not g.check_adjustment(["z"]).valid
    assert g.adjustment_set(observed=["z"]) is None  # u latent: no valid set


def test_retention_outreach_graph() -> None:
    g = outreach_dag()
    assert g.descendants_of_treatment == {"churn", "post_outreach_engagement"}
    assert g.adjustment_set() == OUTREACH_CONFOUNDERS  # usage_score acts only through tickets and health
    declared = [*OUTREACH_CONFOUNDERS, "usage_score"]
    assert g.check_adjustment(declared).valid
    leaky = g.check_adjustment([*declared, "post_outreach_engagement"])
    assert leaky.forbidden == ("post_outreach_engagement",)
    assert "outreach -> post_outreach_engagement" in leaky.reason
    no_region = g.check_adjustment([c for c in declared if c != "region"])
    assert no_region.open_path == ("outreach", "region", "churn")


def test_roles_alone_imply_their_canonical_edges() -> None:
    roles = {
        "x": "confounder",
        "p": "precision",
        "e": "effect_modifier",
        "m": "mediator",
        "q": "post_treatment",
        "c": "collider",
        "z": "instrument",
        "o": "outcome_proxy",
    }
    g = dag([], roles)
    assert set(g.edges) == {
        ("d", "y"), ("x", "d"), ("x", "y"), ("p", "y"), ("e", "y"), ("d", "m"), ("m", "y"),
        ("d", "q"), ("d", "c"), ("y", "c"), ("z", "d"), ("y", "o"),
    }  # fmt: skip
    assert g.descendants_of_treatment == {"m", "q", "c", "o", "y"}
    assert g.adjustment_set() == ("e", "p", "x")
    assert g.role_of("d") == "treatment" and g.role_of("c") == "collider" and g.role_of("nope") is None


# --- conflicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "roles", "variable", "fragment"),
    [
        (
            MEDIATOR,
            {"m": "confounder"},
            "m",
            "has role 'confounder' but is a descendant of the treatment 'd' (d -> m)",
        ),
        (
            MEDIATOR,
            {"x": "mediator"},
            "x",
            "has role 'mediator' but is not a descendant of the treatment 'd'",
        ),
        ([("d", "m"), ("d", "y")], {"m": "mediator"}, "m", "does not cause the outcome 'y'"),
        ([*CONFOUNDER, ("d", "q")], {"q": "post_treatment"}, None, ""),
        (CONFOUNDER, {"x": "post_treatment"}, "x", "has role 'post_treatment' but is not a descendant"),
        (CONFOUNDER, {"x": "precision"}, "x", "has role 'precision' but also causes the treatment 'd'"),
        (
            [("p", "w"), ("d", "y")],
            {"p": "precision"},
            "p",
            "causes the outcome 'y' only through the treatment",
        ),
        (MEDIATOR, {"m": "effect_modifier"}, "m", "has role 'effect_modifier' but is a descendant"),
        (
            [*INSTRUMENT, ("z", "y")],
            {"z": "instrument"},
            "z",
            "reaches the outcome 'y' other than through 'd' (z -> y)",
        ),
        ([("z", "w"), ("d", "y")], {"z": "instrument"}, "z", "does not cause the treatment 'd'"),
        (CONFOUNDER, {"x": "collider"}, "x", "fewer than two arrows point into it"),
        (CONFOUNDER, {"x": "outcome_proxy"}, "x", "is not a descendant of the outcome 'y'"),
        (CONFOUNDER, {"x": "treatment"}, "x", "has role 'treatment' but the study's treatment is 'd'"),
        (CONFOUNDER, {"d": "confounder"}, "d", "is the study's treatment, not a confounder"),
        (CONFOUNDER, {"y": "outcome"}, None, ""),
    ],
)
def test_role_rules(
    edges: list[tuple[str, str]], roles: dict[str, str], variable: str | None, fragment: str
) -> None:
    if variable is None:
        dag(edges, roles)  # consistent: builds
        return
    with pytest.raises(DesignError) as raised:
        dag(edges, roles)
    assert [c.variable for c in raised.value.conflicts] == [variable]
    assert fragment in str(raised.value)
    assert str(raised.value).startswith(f"{variable!r} ")


def test_every_conflict_is_reported_together() -> None:
    with pytest.raises(DesignError) as raised:
        dag(MEDIATOR, {"m": "confounder", "x": "outcome_proxy"})
    assert {c.variable for c in raised.value.conflicts} == {"m", "x"}
    assert len(str(raised.value).splitlines()) == 2


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [([("a", "b"), ("b", "c"), ("c", "a"), ("d", "y")], {"a", "b", "c"}), ([("y", "d")], {"d", "y"})],
)
def test_a_cycle_is_rejected_and_named(edges: list[tuple[str, str]], cycle: set[str]) -> None:
    with pytest.raises(DesignError, match=r"is on the cycle .*; a causal graph must be acyclic") as raised:
        dag(edges)
    (conflict,) = raised.value.conflicts
    assert conflict.section == "edges"
    named = conflict.rule.removeprefix("is on the cycle ").split(";")[0].split(" -> ")
    assert set(named) == cycle and named[0] == named[-1]


def test_spec_needs_content_and_no_self_loops() -> None:
    with pytest.raises(ValidationError, match="needs edges, roles or both"):
        CausalGraphSpec()
    with pytest.raises(ValidationError, match="'x' -> 'x' is a self-loop"):
        CausalGraphSpec(edges=[("x", "x")])
    with pytest.raises(DesignError, match="'d' is both the treatment and the outcome"):
        dag(CONFOUNDER, t="d", y="d")


def test_unknown_variables() -> None:
    g = dag(CONFOUNDER)
    check = g.check_adjustment(["x", "w"])
    assert not check.valid and check.unknown == ("w",)
    assert "'w' is not in the causal graph" in check.reason
    with pytest.raises(DesignError, match="'w' is not a variable of the causal graph"):
        g.is_d_separated(["w"], ["y"])


def test_the_dag_is_read_only() -> None:
    g = dag(CONFOUNDER, {"x": "confounder"})
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        g.graph.add_edge("y", "x")
    with pytest.raises(TypeError):
        g.roles["x"] = "precision"  # type: ignore[index]


# --- invariants on random DAGs -----------------------------------------------------------------


def _random_dag(rng: np.random.Generator, n: int = 7, p: float = 0.35) -> CausalDAG:
    names = [f"v{i}" for i in range(n)]
    edges = [(a, b) for (i, a), (j, b) in itertools.combinations(enumerate(names), 2) if rng.random() < p]
    t, y = sorted(rng.choice(n, size=2, replace=False))
    return dag([e for e in edges if e != (names[t], names[y])], t=names[t], y=names[y])


def test_proposed_sets_are_valid_and_minimal_sets_are_minimal() -> None:
    rng = np.random.default_rng(4)
    for _ in range(150):
        g = _random_dag(rng)
        optimal = g.adjustment_set()
        assert optimal is not None and g.check_adjustment(optimal).valid
        minimal = g.minimal_adjustment_set()
        assert minimal is not None and g.check_adjustment(minimal).valid
        for dropped in minimal:
            assert not g.check_adjustment([c for c in minimal if c != dropped]).valid


def test_open_paths_are_real_backdoor_paths() -> None:
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(150):
        g = _random_dag(rng)
        others = [v for v in g.nodes if v not in (g.treatment, g.outcome)]
        z = [v for v in others if rng.random() < 0.4]
        path = g.open_backdoor_path(z)
        backdoor = nx.DiGraph(g.graph)
        backdoor.remove_edges_from(list(g.graph.out_edges(g.treatment)))
        assert (path is None) == nx.is_d_separator(backdoor, {g.treatment}, {g.outcome}, set(z))
        if path is None:
            continue
        found += 1
        assert path[0] == g.treatment and path[-1] == g.outcome
        assert g.graph.has_edge(path[1], path[0])  # enters the treatment: a backdoor path
        for a, v, b in zip(path, path[1:], path[2:], strict=False):
            collider = g.graph.has_edge(a, v) and g.graph.has_edge(b, v)
            opened = v in z or bool(nx.descendants(backdoor, v) & set(z))
            assert opened if collider else v not in z
    assert found > 20


# --- shortlist ---------------------------------------------------------------------------------


def _verdicts(table: object) -> dict[str, bool]:
    import pandas as pd

    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["method", "valid", "reason"]
    assert tuple(table["method"]) == METHODS
    assert table["reason"].str.len().gt(0).all()
    return dict(zip(table["method"], table["valid"], strict=True))


def test_shortlist_randomized() -> None:
    table = method_shortlist(
        dag([("x", "y"), ("d", "y")], {"x": "precision"}), design="randomized", covariates=["x"]
    )
    valid = _verdicts(table)
    assert [m for m in METHODS if valid[m]] == ["difference_in_means", *METHODS[1:5]]
    reasons = dict(zip(table["method"], table["reason"], strict=True))
    assert reasons["difference_in_differences"].startswith("no panel")
    assert reasons["instrumental_variables"] == "no instrument declared in the causal graph"
    assert reasons["regression_discontinuity"].startswith("no running variable")


def test_shortlist_rejects_a_randomized_design_whose_treatment_has_causes() -> None:
    valid = _verdicts(method_shortlist(dag(CONFOUNDER), design="randomized", covariates=["x"]))
    assert not valid["difference_in_means"] and valid["regression_adjustment"]


def test_shortlist_observational() -> None:
    table = method_shortlist(
        outreach_dag(), design="observational", covariates=[*OUTREACH_CONFOUNDERS, "usage_score"]
    )
    valid = _verdicts(table)
    assert [m for m in METHODS if valid[m]] == list(METHODS[1:5])
    assert "outreach <- " in table.loc[0, "reason"] and table.loc[0, "reason"].startswith("confounded")


def test_shortlist_observational_m_bias_proposes_a_set() -> None:
    table = method_shortlist(dag(M_BIAS), design="observational", covariates=["m"], observed=["a", "m"])
    valid = _verdicts(table)
    assert valid["difference_in_means"] and not valid["aipw"]
    assert "d <- a -> m <- b -> y is open" in table.loc[4, "reason"]
    assert table.loc[4, "reason"].endswith("adjusting for nothing is valid")


def test_shortlist_observational_with_no_valid_set_rejects_every_adjustment_estimator() -> None:
    table = method_shortlist(dag(INSTRUMENT, {"z": "instrument"}), design="observational", covariates=["z"])
    valid = _verdicts(table)
    assert [m for m in METHODS if valid[m]] == ["instrumental_variables"]
    assert table.loc[4, "reason"].endswith("no valid adjustment set among the observed variables")


def test_shortlist_without_a_graph_and_with_panel_or_running_variable() -> None:
    valid = _verdicts(method_shortlist(None, design="observational", covariates=["x"]))
    assert not valid["difference_in_means"] and valid["aipw"]
    assert not _verdicts(method_shortlist(None, design="randomized"))["regression_adjustment"]
    other = _verdicts(method_shortlist(None, design="observational", panel=True, running_variable="score"))
    assert other["difference_in_differences"] and other["regression_discontinuity"]
    assert not _verdicts(method_shortlist(dag(MEDIATOR), design="observational", running_variable="m"))[
        "regression_discontinuity"
    ]
    with pytest.raises(ValueError, match="design"):
        method_shortlist(None, design="quasi")  # type: ignore[arg-type]


# --- rendering ---------------------------------------------------------------------------------


def _node_line(dot: str, node: str) -> str:
    (line,) = [s for s in dot.splitlines() if s.strip().startswith(f'"{node}" [')]
    return line


def test_dot_marks_roles_treatment_outcome_and_forbidden_controls() -> None:
    g = dag(MEDIATOR, {"m": "mediator", "x": "confounder"})
    dot = to_dot(g, adjustment=["x"])
    assert dot.startswith("digraph causal_graph {") and dot.rstrip().endswith("}")
    assert f'fillcolor="{ROLE_STYLES["treatment"][0]}"' in _node_line(dot, "d")
    assert f'fillcolor="{ROLE_STYLES["outcome"][0]}"' in _node_line(dot, "y")
    assert 'label="m\\n(mediator)\\nforbidden control"' in _node_line(dot, "m")
    assert 'style="filled,dashed"' in _node_line(dot, "m")
    assert "forbidden" not in _node_line(dot, "y") and "forbidden" not in _node_line(dot, "x")
    assert "peripheries=2" in _node_line(dot, "x") and "peripheries" not in _node_line(dot, "m")
    assert '"d" -> "y" [penwidth=2.5];' in dot
    edges = [s.strip() for s in dot.splitlines() if "->" in s]
    assert len(edges) == 5 and edges == sorted(edges)  # MEDIATOR's four and d -> y
    assert to_dot(g, adjustment=["x"]) == dot


def test_render_png_draws_a_png() -> None:
    png = render_png(to_dot(outreach_dag()))
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    assert width > 100 and height > 50


def test_render_png_errors_are_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(GraphvizError, match="dot failed"):
        render_png("digraph { this is not dot")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizError, match="install the graphviz system package"):
        render_png("digraph { a -> b }")
