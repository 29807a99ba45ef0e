"""staff topics: one forum topic per client in a staff chat

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_topics",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("thread_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_staff_topics_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_staff_topics")),
        sa.UniqueConstraint("chat_id", "thread_id", name=op.f("uq_staff_topics_chat_id")),
    )


def downgrade() -> None:
    op.drop_table("staff_topics")
