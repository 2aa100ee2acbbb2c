"""The causal DAG as a picture: Graphviz DOT source, and a PNG drawn by the ``dot`` program.

Nodes are coloured and shaped by role; the treatment and outcome are highlighted; descendants of
the treatment other than the outcome (forbidden controls) get a dashed red border; members of the
adjustment set get a double border. ``render_png`` pipes the DOT source through ``dot -Tpng`` on
stdin/stdout (Graphviz is a system package, not a Python one).

Example
-------
>>> from assimilate.design.card import CausalGraphSpec
>>> from assimilate.design.dag import CausalDAG
>>> dag = CausalDAG(CausalGraphSpec(roles={"x": "confounder"}), treatment="d", outcome="y")
>>> to_dot(dag).splitlines()[0]
'digraph causal_graph {'
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from assimilate.design.dag import CausalDAG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RENDER_TIMEOUT_SECONDS = 30.0

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


class GraphvizError(RuntimeError):
    """The Graphviz ``dot`` program is missing or could not draw the graph."""


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


def render_png(dot_source: str) -> bytes:
    """Draw DOT source as PNG bytes with Graphviz ``dot`` (stdin to stdout, no files).

    Raises
    ------
    GraphvizError
        If ``dot`` is not on the PATH (install the ``graphviz`` system package), or fails.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError(
            "the Graphviz 'dot' program is not on the PATH; install the graphviz system package "
            "(scripts/setup.sh does) to draw the causal graph"
        )
    try:
        done = subprocess.run(
            [dot, "-Tpng"],
            input=dot_source.encode("utf-8"),
            capture_output=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise GraphvizError(f"dot did not finish within {RENDER_TIMEOUT_SECONDS:g} s") from error
    if done.returncode != 0 or not done.stdout.startswith(PNG_SIGNATURE):
        message = done.stderr.decode("utf-8", errors="replace").strip()
        raise GraphvizError(f"dot failed (exit {done.returncode}): {message or 'no PNG produced'}")
    return done.stdout
