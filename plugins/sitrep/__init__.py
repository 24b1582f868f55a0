"""sitrep: streaming news ingestion for conflict reporting (feeds -> clean reports in PostgreSQL)."""

__version__ = "0.1.0"
