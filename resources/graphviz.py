"""Draw Graphviz DOT source as PNG with the ``dot`` program (a system package, installed by setup).

The library only writes DOT (``assimilate.design.to_dot``); running a program is the shell's job.
"""

from __future__ import annotations

import shutil
import subprocess

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RENDER_TIMEOUT_SECONDS = 30.0


class GraphvizError(RuntimeError):
    """The Graphviz ``dot`` program is missing or could not draw the graph."""


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
