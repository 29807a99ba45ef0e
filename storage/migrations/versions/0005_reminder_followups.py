"""reminders: a key for follow-ups created once per occasion, a count of firings

``key`` is unique where set (an automatic follow-up derives it from what caused
it, so two scans or two instances create it once); ``fired_count`` lets a
button on a delivered reminder act on that delivery only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reminders", sa.Column("key", sa.String(length=200), nullable=True))
    op.add_column(
        "reminders",
        sa.Column("fired_count", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index("ix_reminders_key", "reminders", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_reminders_key", table_name="reminders")
    with op.batch_alter_table("reminders") as batch:
        batch.drop_column("fired_count")
        batch.drop_column("key")
