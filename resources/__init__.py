"""Dagster resources, one per file: warehouse (DuckDB), landing folder, reports, alerts."""
