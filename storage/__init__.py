"""Storage: SQLAlchemy 2 models, queries and Alembic migrations. The only place that knows SQL."""

from storage.db import Database

__all__ = ["Database"]
