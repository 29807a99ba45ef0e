"""the web console: sign-in links, sessions, the cookies' signing key, first reads

``console_links``: one-time sign-in links for a manager, kept as the SHA-256 of the
secret, valid until ``expires_at`` (15 minutes) and used once (``used_at``).
``console_sessions``: a signed-in person (the session id kept as its SHA-256), with
when it began, was last seen and ended. ``console_keys``: the key signing the
console's cookies, in the database so that every instance accepts them.
``console_reads``: the clients a session has read (the first read is audited).
``ix_conversations_updated_at``: the live feed reads the newest change of a
request by this index.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("expires_at", _AT, nullable=False),
        sa.Column("used_at", _AT, nullable=True),
        sa.Column("sent_by", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["managers.id"], name=op.f("fk_console_links_manager_id_managers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_links")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_console_links_secret_hash")),
    )
    op.create_index("ix_console_links_manager", "console_links", ["manager_id", "created_at"])
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("last_seen_at", _AT, nullable=False),
        sa.Column("ended_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["managers.id"], name=op.f("fk_console_sessions_manager_id_managers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_console_sessions_secret_hash")),
    )
    op.create_index("ix_console_sessions_manager", "console_sessions", ["manager_id"])
    op.create_table(
        "console_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_keys")),
    )
    op.create_table(
        "console_reads",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["console_sessions.id"],
            name=op.f("fk_console_reads_session_id_console_sessions"),
        ),
        sa.PrimaryKeyConstraint("session_id", "client_id", name=op.f("pk_console_reads")),
    )
    op.create_index("ix_conversations_updated_at", "conversations", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_updated_at", table_name="conversations")
    op.drop_table("console_reads")
    op.drop_table("console_keys")
    op.drop_index("ix_console_sessions_manager", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_console_links_manager", table_name="console_links")
    op.drop_table("console_links")
