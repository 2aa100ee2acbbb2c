"""Give Arrow's freed memory back to the system once a conversion is done.

pyarrow allocates through its own pool (mimalloc here), which keeps the pages of freed buffers for
reuse and returns them only when its heap is active again. After a large conversion (a Parquet
file read into pandas, a warehouse read through Arrow, a frame registered as an Arrow table for
an insert) nothing in the step allocates through Arrow for a while, so the freed pages stay
resident: reading a 1e7-row Parquet batch left the process 3.55 GiB larger for a 1.9 GiB frame,
and 1.46 GiB larger once the pool had released them. Releasing costs about a microsecond.
"""

from __future__ import annotations

import pyarrow as pa  # type: ignore[import-untyped]


def release_arrow_memory() -> None:
    """Return the pages Arrow's default pool holds for freed buffers to the system."""
    pa.default_memory_pool().release_unused()
