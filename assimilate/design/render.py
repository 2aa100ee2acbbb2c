"""The causal DAG as Graphviz DOT source (the shell draws it with the ``dot`` program).

Nodes are coloured and shaped by role; the treatment and outcome are highlighted; descendants of
the treatment other than the outcome (forbidden controls) get a dashed red border; members of the
adjustment set get a double border. The library never runs a program: drawing the PNG is the
shell's job (``resources/graphviz.py``); from a notebook, ``graphviz.Source(to_dot(dag))`` draws it.

Example
-------
>>> from assimilate.design.card import CausalGraphSpec
>>> from assimilate.design.dag import CausalDAG
>>> dag = CausalDAG(CausalGraphSpec(roles={"x": "confounder"}), treatment="d", outcome="y")
>>> to_dot(dag).splitlines()[0]
'digraph causal_graph {'
"""

from __future__ import annotations

from collections.abc import Iterable

from assimilate.design.dag import CausalDAG

# role -> (fill colour, shape)
ROLE_STYLES: dict[str, tuple[str, str]] = {
    "treatment": ("#1f77b4", "box"),
    "outcome": ("#2ca02c", "box"),
    "confounder": ("#fdd49e", "ellipse"),
    "precision": ("#c7e9c0", "ellipse"),
    "effect_modifier": ("#dadaeb", "ellipse"),
    "mediator": ("#fcbba1", "ellipse"),
    "post_treatment": ("#fcbba1", "ellipse"),
    "collider": ("#fee391", "diamond"),
    "instrument": ("#c6dbef", "invtriangle"),
    "outcome_proxy": ("#e5e5e5", "ellipse"),
}
_UNLABELLED = ("#ffffff", "ellipse")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(dag: CausalDAG, *, adjustment: Iterable[str] = ()) -> str:
    """Graphviz DOT source of a causal DAG.

    Parameters
    ----------
    dag : CausalDAG
        The graph to draw.
    adjustment : iterable of str
        Variables adjusted for (drawn with a double border).

    Returns
    -------
    str
        Deterministic DOT source (nodes and edges sorted).
    """
    adjusted = set(adjustment)
    forbidden = dag.descendants_of_treatment - {dag.outcome}
    lines = [
        "digraph causal_graph {",
        "  rankdir=LR;",
        '  node [style=filled, fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555"];',
    ]
    for node in dag.nodes:
        role = dag.role_of(node)
        fill, shape = ROLE_STYLES.get(role or "", _UNLABELLED)
        label = node if role is None or role in ("treatment", "outcome") else f"{node}\n({role})"
        if node in forbidden:
            label += "\nforbidden control"
        attributes = [f"label={_quote(label)}", f'fillcolor="{fill}"', f"shape={shape}"]
        if role in ("treatment", "outcome"):
            attributes += ["penwidth=2.5", 'fontcolor="#ffffff"']
        if node in forbidden:
            attributes += ['style="filled,dashed"', 'color="#d62728"', "penwidth=2"]
        if node in adjusted:
            attributes.append("peripheries=2")
        attributes.append(f"tooltip={_quote(role or 'no declared role')}")
        lines.append(f"  {_quote(node)} [{', '.join(attributes)}];")
    for cause, effect in dag.edges:
        emphasis = " [penwidth=2.5]" if (cause, effect) == (dag.treatment, dag.outcome) else ""
        lines.append(f"  {_quote(cause)} -> {_quote(effect)}{emphasis};")
    lines.append("}")
    return "\n".join(lines) + "\n"
