"""Simulation studies: does each interval and gate keep its stated promise under real use?

Every study is a module with ``run(*, fast: bool, seed: int) -> pandas.DataFrame`` returning one row
per measured quantity, in the columns of :data:`simulations.table.COLUMNS`. ``fast=True`` is the
version CI runs (seconds); ``fast=False`` is the full study whose table goes to docs/SIMULATIONS.md
(``python -m simulations.run``).
"""
