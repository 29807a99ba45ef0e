"""client merges (undoable) and full-text search over the interaction log

``clients.merged_into`` marks a client merged into another; ``merges`` records
what each merge moved, so that it can be undone. Full-text search: on SQLite an
FTS5 index (external content, filled by a trigger on insert; interactions never
change their text nor go away) that the hub fills in batches behind the log
(``search_positions`` keeps how far), so that indexing never slows ingest; on
PostgreSQL a GIN index over ``to_tsvector('simple', text)``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_clients_merged_into_clients"), "clients", ["merged_into"], ["id"]
        )
    op.create_table(
        "search_positions",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_search_positions")),
    )
    op.create_table(
        "merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kept_id", sa.Integer(), nullable=False),
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("moved", sa.JSON(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["kept_id"], ["clients.id"], name=op.f("fk_merges_kept_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["merged_id"], ["clients.id"], name=op.f("fk_merges_merged_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE interactions_fts USING fts5("
            "text, content='interactions', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        # Filled by the hub behind the log (storage/search.py), from position 0.
    else:
        op.execute(
            "CREATE INDEX ix_interactions_fts ON interactions "
            "USING gin (to_tsvector('simple', text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS interactions_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_interactions_fts")
    op.drop_table("merges")
    op.drop_table("search_positions")
    with op.batch_alter_table("clients") as batch:
        batch.drop_constraint(op.f("fk_clients_merged_into_clients"), type_="foreignkey")
        batch.drop_column("merged_into")
