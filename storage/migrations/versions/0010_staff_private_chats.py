"""staff private chats: which client a bot's private message is about, and each
manager's current client

A manager answers a client from their private chat with the bot by replying to
the message that showed the client's words; ``staff_private_messages`` keeps
which client that message (or a numbered entry of it) was about, so that replies
to older messages still work after a restart. ``staff_current_clients`` keeps the
client a manager's plain text goes to (``/c ID``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_private_messages",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("entry", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_staff_private_messages_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_staff_private_messages_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint(
            "chat_id", "message_id", "entry", name=op.f("pk_staff_private_messages")
        ),
    )
    op.create_index("ix_staff_private_messages_at", "staff_private_messages", ["at"])
    op.create_table(
        "staff_current_clients",
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["managers.id"],
            name=op.f("fk_staff_current_clients_manager_id_managers"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_staff_current_clients_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("manager_id", name=op.f("pk_staff_current_clients")),
    )


def downgrade() -> None:
    op.drop_table("staff_current_clients")
    op.drop_index("ix_staff_private_messages_at", table_name="staff_private_messages")
    op.drop_table("staff_private_messages")
