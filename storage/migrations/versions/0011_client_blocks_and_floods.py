"""blocked clients and flood control

``clients.blocked_at`` and ``blocked_by``: a supervisor or an admin blocked the
client (``/block``); their messages are logged and reach no manager.
``clients.flood_at`` and ``flood_count``: the client's current minute of
messages and how many requests they sent in it, which the ingest path keeps so
that a client who floods is shown to the staff as one mirror (across batches
and instances).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("blocked_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("flood_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("flood_count", sa.Integer(), server_default="0", nullable=False))
        batch.create_foreign_key(
            op.f("fk_clients_blocked_by_managers"), "managers", ["blocked_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_constraint(op.f("fk_clients_blocked_by_managers"), type_="foreignkey")
        batch.drop_column("flood_count")
        batch.drop_column("flood_at")
        batch.drop_column("blocked_by")
        batch.drop_column("blocked_at")
