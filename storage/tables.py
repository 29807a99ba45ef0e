"""The models' Core tables, typed, for the set-based queries of the hot paths."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from storage.models import (
    Attachment,
    Audit,
    BusinessEvent,
    Campaign,
    CampaignTarget,
    Client,
    Conversation,
    Deadline,
    Identity,
    Interaction,
    MailboxCursor,
    Manager,
    Merge,
    Outbox,
    Rating,
    Reminder,
    SearchPosition,
    StaffCurrentClient,
    StaffPrivateMessage,
    StaffTopic,
    WebhookSubscription,
)

clients = cast(Table, Client.__table__)
identities = cast(Table, Identity.__table__)
conversations = cast(Table, Conversation.__table__)
# The statuses of a conversation not yet resolved. Queries over all conversations
# say ``status IN UNRESOLVED``: the (status, assignee_id) index then seeks, where
# ``status != 'resolved'`` scans every conversation ever had.
UNRESOLVED = ("open", "pending", "waiting")
interactions = cast(Table, Interaction.__table__)
attachments = cast(Table, Attachment.__table__)
managers = cast(Table, Manager.__table__)
outbox = cast(Table, Outbox.__table__)
reminders = cast(Table, Reminder.__table__)
topics = cast(Table, StaffTopic.__table__)
private_messages = cast(Table, StaffPrivateMessage.__table__)
current_clients = cast(Table, StaffCurrentClient.__table__)
audit = cast(Table, Audit.__table__)
mailbox_cursors = cast(Table, MailboxCursor.__table__)
deadlines = cast(Table, Deadline.__table__)
campaigns = cast(Table, Campaign.__table__)
campaign_targets = cast(Table, CampaignTarget.__table__)
merges = cast(Table, Merge.__table__)
search_positions = cast(Table, SearchPosition.__table__)
business_events = cast(Table, BusinessEvent.__table__)
ratings = cast(Table, Rating.__table__)
webhook_subscriptions = cast(Table, WebhookSubscription.__table__)
