"""The outbox: a notification is stored before any network work (enqueue), claimed under a lease (queue) and
delivered by workers over kept SMTP sessions (worker). See DESIGN.md "Notifications and delivery"."""
from webapp.outbox.enqueue import IdempotencyConflict, NoDefaultAccount, NotificationError, send_notification
from webapp.outbox.message import build_message, build_wire
from webapp.outbox.queue import claim, connection, outbox_counts, retry_notification
from webapp.outbox.settings import ACTIVE, FOOTER_SETTING, LEASE_EXPIRED, WAITING, OutboxSettings
from webapp.outbox.worker import Worker, WorkerThread

__all__ = [
    "send_notification", "NotificationError", "NoDefaultAccount", "IdempotencyConflict", "OutboxSettings",
    "Worker", "WorkerThread", "claim", "retry_notification", "outbox_counts", "build_message", "build_wire",
    "connection", "ACTIVE", "WAITING", "FOOTER_SETTING", "LEASE_EXPIRED",
]
