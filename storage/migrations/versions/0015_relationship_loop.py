"""the relationship loop: business events, stage rules, waiting, ratings, webhooks

``business_events`` holds what a client did outside a conversation (a purchase,
a payment, a meeting, a call), idempotent by the caller's ``key``, each also an
interaction on the timeline. ``clients.stage_by_hand_at`` is when a person last
moved the client's stage (a rule leaves it alone that day);
``clients.stage_before_lapse`` the stage a lapsed client returns to.
``conversations.waiting_since`` marks a request waiting on the client (status
``waiting``); ``deadlines.paused_at`` stops its resolution clock meanwhile.
``ratings`` are the satisfaction asks and answers of resolved requests.
``webhook_subscriptions`` mirrors ``[[webhooks]]`` (synced at start and reload)
so that an event is queued for each subscriber by one statement.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("stage_by_hand_at", _AT, nullable=True))
        batch.add_column(sa.Column("stage_before_lapse", sa.String(length=30), nullable=True))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("waiting_since", _AT, nullable=True))
    with op.batch_alter_table("deadlines") as batch:
        batch.add_column(sa.Column("paused_at", _AT, nullable=True))
    op.create_table(
        "business_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("interaction_id", sa.Integer(), nullable=True),
        sa.Column("at", _AT, nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_business_events_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["interaction_id"],
            ["interactions.id"],
            name=op.f("fk_business_events_interaction_id_interactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_events")),
        sa.UniqueConstraint("key", name=op.f("uq_business_events_key")),
    )
    op.create_index("ix_business_events_client", "business_events", ["client_id", "kind", "at"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("asked_at", _AT, nullable=False),
        sa.Column("rated_at", _AT, nullable=True),
        sa.Column("commented_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_ratings_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_ratings_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["managers.id"], name=op.f("fk_ratings_manager_id_managers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
    )
    op.create_index("ix_ratings_client", "ratings", ["client_id", "asked_at"])
    op.create_index("ix_ratings_rated", "ratings", ["rated_at"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("webhook", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("webhook", "type", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index("ix_webhook_subscriptions_type", "webhook_subscriptions", ["type"])


def downgrade() -> None:
    op.drop_index("ix_webhook_subscriptions_type", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
    op.drop_index("ix_ratings_rated", table_name="ratings")
    op.drop_index("ix_ratings_client", table_name="ratings")
    op.drop_table("ratings")
    op.drop_index("ix_business_events_client", table_name="business_events")
    op.drop_table("business_events")
    with op.batch_alter_table("deadlines") as batch:
        batch.drop_column("paused_at")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("waiting_since")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("stage_before_lapse")
        batch.drop_column("stage_by_hand_at")
