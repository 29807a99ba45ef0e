"""PostgreSQL: Telegram usernames searched through a table of one row per client and
username, filled behind the log, not through an index of every message

``search_terms_usernames`` (the name of SQLite's FTS5 table of the same role)
holds the first inbound Telegram message (``interaction_id``) that carried each
username of a client, the username in lower case (``term``), with a ``pg_trgm`` GIN
index on it; the hub fills it in batches behind ingest from position 0
(``storage/terms.py``), as on SQLite. It replaces the GIN index over every inbound
message's username (``ix_search_terms_usernames`` on interactions), which ingest
paid for with each message and whose common trigrams each search read in full: ten
messages per client, a million clients. SQLite: nothing changes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP INDEX IF EXISTS ix_search_terms_usernames")
    op.execute(
        "CREATE TABLE search_terms_usernames (interaction_id INTEGER NOT NULL"
        " CONSTRAINT search_terms_usernames_pkey PRIMARY KEY, term TEXT NOT NULL)"
    )
    op.execute(
        "CREATE INDEX ix_search_terms_usernames ON search_terms_usernames USING gin"
        " (term gin_trgm_ops)"
    )
    op.execute("DELETE FROM search_positions WHERE name = 'terms:usernames'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TABLE IF EXISTS search_terms_usernames")
    op.execute("DELETE FROM search_positions WHERE name = 'terms:usernames'")
    op.execute(
        "CREATE INDEX ix_search_terms_usernames ON interactions USING gin "
        "(lower(extras ->> 'username') gin_trgm_ops) WHERE (extras ->> 'username') IS NOT NULL"
    )
