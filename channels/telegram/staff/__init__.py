"""The managers' side of the Telegram channel: the staff forum and private chats.

A client's topic is opened on their first mirrored message, with the client
card and its buttons, and every mirror is posted there (topics.py, mirror.py).
What managers write in the topic becomes an answer to the client, an internal
note or a command through the :class:`~hub.kernel.ports.StaffDesk` (group.py);
buttons act and refresh the card (buttons.py). Notices (assigned, offer,
reminder, delivery failed) and the client's messages go to the manager's
private chat with the bot (notices.py), where a reply to a client's message
answers them, as plain text does to the current client, and ``/inbox``,
``/find``, ``/report`` and ``/t`` answer too (private.py, answering.py). When
a manager's chat is over its budget, the clients' messages for them wait and go
as one digest with numbered entries, answered by ``/r N`` (digests.py).
Every call is paced per chat (pacing.py, calls.py): when a group's budget is
spent, a send is deferred with ``retry_after`` so the dispatcher tries again
when there is room. Only registered managers are
obeyed; anyone else is refused through the desk, which records the attempt
(side.py, the :class:`~channels.telegram.base.StaffSurface`).
"""

from channels.telegram.staff.pacing import Pacer
from channels.telegram.staff.side import StaffSide

__all__ = ["Pacer", "StaffSide"]
