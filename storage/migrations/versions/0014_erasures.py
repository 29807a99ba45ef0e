"""erasure of personal data: forgotten clients, retention, and the log's one exception

``clients.forgotten_at`` marks a person who asked to be forgotten. ``erasures``
records each erasure (who, why, when; a client, or every message logged before
a time). The log's append-only guard is rebuilt with one narrow exception: a
row's text may become the tombstone ``[erased]`` (html, subject, author and
external id emptied with it; direction, channel and time unchanged) where an
erasure covers the row. Everything else is refused as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOMBSTONE = "[erased]"
_FROZEN = ("direction", "channel", "external_id", "text", "html", "at", "author", "subject")


def _changed(differ: str) -> str:
    return " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in _FROZEN)


def _erasable(same: str) -> str:
    """A tombstone that an erasure covers (SQL shared by both dialects but for IS)."""
    kept = " AND ".join(f"NEW.{c} {same} OLD.{c}" for c in ("direction", "channel", "at"))
    emptied = " AND ".join(
        f"(NEW.{c} {same} OLD.{c} OR NEW.{c} IS NULL)" for c in ("external_id", "author", "subject")
    )
    covered = (
        "EXISTS (SELECT 1 FROM erasures e WHERE e.client_id = OLD.client_id OR OLD.at < e.before)"
    )
    return f"(NEW.text = '{TOMBSTONE}' AND NEW.html IS NULL AND {kept} AND {emptied} AND {covered})"


_SQLITE_GUARD = f"""CREATE TRIGGER interactions_no_rewrite BEFORE UPDATE OF {", ".join(_FROZEN)}
    ON interactions
    WHEN ({_changed("IS NOT")}) AND NOT {_erasable("IS")}
    BEGIN SELECT RAISE(ABORT, 'interactions are append-only'); END"""

_SQLITE_OLD_GUARD = f"""CREATE TRIGGER interactions_no_rewrite BEFORE UPDATE OF {", ".join(_FROZEN)}
    ON interactions
    WHEN {_changed("IS NOT")}
    BEGIN SELECT RAISE(ABORT, 'interactions are append-only'); END"""

_PG_GUARD = f"""CREATE OR REPLACE FUNCTION interactions_append_only() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'interactions are append-only'; END IF;
        IF ({_changed("IS DISTINCT FROM")}) AND NOT {_erasable("IS NOT DISTINCT FROM")}
        THEN RAISE EXCEPTION 'interactions are append-only';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql"""

_PG_OLD_GUARD = f"""CREATE OR REPLACE FUNCTION interactions_append_only() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR {_changed("IS DISTINCT FROM")}
        THEN RAISE EXCEPTION 'interactions are append-only';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql"""


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("before", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_erasures_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(op.f("ix_erasures_client_id"), "erasures", ["client_id"])
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER interactions_no_rewrite")
        op.execute(_SQLITE_GUARD)
    else:
        op.execute(_PG_GUARD)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER interactions_no_rewrite")
        op.execute(_SQLITE_OLD_GUARD)
    else:
        op.execute(_PG_OLD_GUARD)
    op.drop_index(op.f("ix_erasures_client_id"), table_name="erasures")
    op.drop_table("erasures")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("forgotten_at")
