"""substring search on clients' identities, names and Telegram usernames through an index

SQLite: three FTS5 tables with the trigram tokenizer (``search_terms_identities``,
``search_terms_names``, ``search_terms_usernames``: the rowid is the identity's, the
client's, and the first inbound Telegram message's that carried a username), filled
by the hub behind ingest (``storage/terms.py``) from position 0, so that a big
database is indexed in batches after start rather than by this migration. PostgreSQL:
``pg_trgm`` GIN indexes on identities' values, clients' names and the usernames of
inbound Telegram messages, which it keeps itself. Both: a btree index for the
beginning of a name (queries under three characters).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("search_terms_identities", "search_terms_names", "search_terms_usernames")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _TABLES:
            op.execute(f"CREATE VIRTUAL TABLE {name} USING fts5(term, tokenize='trigram')")
        op.execute("CREATE INDEX ix_search_terms_name_prefix ON clients (name)")
        return
    # A trusted extension since PostgreSQL 13: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX ix_search_terms_identities ON identities USING gin (value gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_search_terms_names ON clients USING gin (name gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_search_terms_usernames ON interactions USING gin "
        "(lower(extras ->> 'username') gin_trgm_ops) WHERE (extras ->> 'username') IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_search_terms_name_prefix ON clients (name text_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _TABLES:
            op.execute(f"DROP TABLE IF EXISTS {name}")
        op.execute("DELETE FROM search_positions WHERE name LIKE 'terms:%'")
    else:
        for name in ("identities", "names", "usernames"):
            op.execute(f"DROP INDEX IF EXISTS ix_search_terms_{name}")
    op.execute("DROP INDEX IF EXISTS ix_search_terms_name_prefix")
