"""The outbox API the benchmarks drive, imported here only: the figures measure what ships, by its public names."""
# TODO(merge): webapp.outbox only
try:
    from webapp.outbox import OutboxSettings, Worker, build_wire, connection, outbox_counts, send_notification
except ImportError:
    from webapp.mail.outbox import OutboxSettings, Worker, build_wire, connection, outbox_counts, send_notification

__all__ = ["OutboxSettings", "Worker", "build_wire", "connection", "outbox_counts", "send_notification"]
