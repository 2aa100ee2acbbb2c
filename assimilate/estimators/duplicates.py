"""Units repeated within a batch: find them, then refuse the batch or cluster on the unit id.

A unit with ``r`` rows enters an estimate ``r`` times; taking its rows as independent shrinks the
standard error by about ``1/sqrt(r)`` (``1/sqrt(2)`` for a batch delivered twice). Clustering on the
unit counts it once: ``V = G/(G-1) sum_u (sum_{i in u} psi_i)^2 / n^2``
(:func:`assimilate.estimators.variance.with_standard_error`).

Example
-------
>>> import pandas as pd
>>> frame = pd.DataFrame({"unit": ["a", "b", "a", "c", "b"], "store": [1, 1, 1, 2, 1]})
>>> found = find_duplicate_units(frame, unit_id="unit")
>>> found.examples, found.n_repeated_units, found.n_extra_rows
(('a', 'b'), 2, 2)
>>> duplicate_unit_clusters(frame, unit_id="unit", policy="cluster").tolist()
[0, 1, 0, 2, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import csgraph

from assimilate._validation import check_choice
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.variance import cluster_codes

DuplicatePolicy = Literal["reject", "cluster"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = ("reject", "cluster")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class DuplicateUnits:
    """Unit ids that appear on more than one row of a batch.

    Parameters
    ----------
    unit_id : str
        The unit id column.
    n_rows, n_units : int
        Rows of the batch and distinct unit ids.
    n_repeated_units : int
        Unit ids with two or more rows.
    examples : tuple of str
        The first repeated ids (at most five), in order of first appearance.
    """

    unit_id: str
    n_rows: int
    n_units: int
    n_repeated_units: int
    examples: tuple[str, ...]

    @property
    def found(self) -> bool:
        """Whether any unit id is repeated."""
        return self.n_repeated_units > 0

    @property
    def n_extra_rows(self) -> int:
        """Rows beyond the first of each unit."""
        return self.n_rows - self.n_units

    def message(self) -> str:
        """One sentence naming the repeated ids, or that there are none."""
        if not self.found:
            return f"unit id column {self.unit_id!r}: every unit appears once ({self.n_rows} rows)"
        more = self.n_repeated_units - len(self.examples)
        listed = ", ".join(repr(e) for e in self.examples) + (f" and {more} more" if more else "")
        return (
            f"unit id column {self.unit_id!r}: {self.n_repeated_units} unit(s) appear on more than one row "
            f"({self.n_extra_rows} extra of {self.n_rows} rows): {listed}; taken as independent they "
            "shrink the standard error (about 1/sqrt(2) for a unit seen twice)"
        )

    def verdict(self) -> Verdict:
        """``duplicate_units``: passes when no unit id is repeated."""
        return Verdict.evaluate(
            "duplicate_units",
            value=float(self.n_repeated_units),
            threshold=0.0,
            rule="repeated unit ids == 0",
            passed=not self.found,
            reason=self.message(),
        )


class DuplicateUnitsError(ValueError):
    """A batch with repeated unit ids under the policy ``"reject"``; ``report`` names them."""

    def __init__(self, report: DuplicateUnits) -> None:
        self.report = report
        super().__init__(
            report.message() + "; the duplicates policy is 'reject' ('cluster' keeps the rows and "
            "clusters the standard error on the unit id)"
        )


def find_duplicate_units(data: pd.DataFrame, *, unit_id: str) -> DuplicateUnits:
    """Which unit ids of ``data`` appear on more than one row.

    Parameters
    ----------
    data : DataFrame
        One batch.
    unit_id : str
        The unit id column (missing ids refused).

    Returns
    -------
    DuplicateUnits
    """
    if unit_id not in data.columns:
        raise ValueError(f"unit id column {unit_id!r} not in the data (columns: {list(data.columns)})")
    ids = data[unit_id]
    if ids.isna().any():
        raise ValueError(f"unit id column {unit_id!r}: {int(ids.isna().sum())} missing unit id(s)")
    repeated = ids[ids.duplicated(keep=False)].drop_duplicates()
    return DuplicateUnits(
        unit_id=unit_id,
        n_rows=len(ids),
        n_units=int(ids.nunique()),
        n_repeated_units=len(repeated),
        examples=tuple(str(v) for v in repeated.iloc[:MAX_EXAMPLES]),
    )


def duplicate_unit_clusters(
    data: pd.DataFrame,
    *,
    unit_id: str,
    policy: DuplicatePolicy,
    cluster: str | None = None,
) -> NDArray[np.int64] | None:
    """The cluster labels a batch's standard error needs, given the study's duplicates policy.

    Parameters
    ----------
    data : DataFrame
        One batch.
    unit_id : str
        The unit id column.
    policy : {"reject", "cluster"}
        ``"reject"``: repeated ids raise :class:`DuplicateUnitsError` naming them. ``"cluster"``:
        the rows of one unit share a cluster.
    cluster : str, optional
        The study's own cluster column. With repeated units, a unit whose rows lie in several of
        its clusters joins them into one (the connected components of units and clusters: a
        coarser clustering stays valid).

    Returns
    -------
    ndarray of int or None
        One label per row for ``with_standard_error(cluster=...)``; None when there is neither a
        repeated unit nor a cluster column (unit-level SE).
    """
    check_choice("policy", policy, DUPLICATE_POLICIES)
    report = find_duplicate_units(data, unit_id=unit_id)
    if cluster is not None and cluster not in data.columns:
        raise ValueError(f"cluster column {cluster!r} not in the data (columns: {list(data.columns)})")
    if not report.found:
        return None if cluster is None else cluster_codes(data[cluster], n=len(data), name=cluster)
    if policy == "reject":
        raise DuplicateUnitsError(report)
    units, _ = pd.factorize(data[unit_id])
    units = np.asarray(units, dtype=np.int64)
    if cluster is None:
        return units
    groups = cluster_codes(data[cluster], n=len(data), name=cluster)
    n_units = int(units.max()) + 1
    edges = sparse.coo_matrix(
        (np.ones(len(units)), (units, n_units + groups)), shape=(n_units + int(groups.max()) + 1,) * 2
    )
    _, component = csgraph.connected_components(edges, directed=False)
    return np.unique(component[units], return_inverse=True)[1].astype(np.int64)
