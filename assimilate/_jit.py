"""The one place the library touches numba: a typed ``jit`` decorator and the fast-math flag sets.

Compiled loops are cached on disk by numba (``cache=True``) so only the first call on a machine pays
the compile time; nothing is compiled at import. Numba keys a cached function on its own file
only: after editing a module whose compiled functions another module's kernel calls (say
``_weighted_quantiles``, called by ``_particle_loop``), delete ``__pycache__/*.nbi`` and ``*.nbc``
or the caller keeps the old code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])

# Exact IEEE arithmetic: the Kalman loop must equal the Python step API bit for bit.
EXACT: frozenset[str] = frozenset()
# Sums may be reordered (vectorized): Monte Carlo loops, where the last bit carries no meaning.
# Never "nnan"/"ninf": infinities and NaN must keep their meaning.
REORDER = frozenset({"reassoc", "contract", "nsz"})


def jit(*, fastmath: frozenset[str] = EXACT, nogil: bool = False) -> Callable[[F], F]:
    """``numba.njit(cache=True)`` that keeps the function's signature for the type checker.

    Division follows IEEE (``error_model="numpy"``: x / 0 is inf or NaN, not an exception), which
    also keeps the checks out of the loops; the kernels guard the divisions that can meet a zero.
    With ``nogil`` a call releases the GIL while it runs, so that threads run it in parallel; the
    function must then read shared arrays only and write to memory no other thread touches.
    """

    def decorate(function: F) -> F:
        flags = set(fastmath) if fastmath else False
        compiled = numba.njit(cache=True, fastmath=flags, error_model="numpy", nogil=nogil)(function)
        return cast(F, compiled)

    return decorate
