"""What GET /readyz and GET /metrics read besides the outbox: workers' heartbeats and delivery counters."""
from collections import Counter
from datetime import timedelta

from peewee import EXCLUDED, BigIntegerField, CharField, CompositeKey, DateTimeField, ForeignKeyField, fn

from webapp.models.accounts import SmtpAccount
from webapp.models.base import BaseModel, utcnow


class WorkerHeartbeat(BaseModel):
    """When each outbox worker last went round its loop (a worker hook writes it: webapp/cli.py _make_worker)."""

    name = CharField(max_length=100, primary_key=True)
    beat_at = DateTimeField(default=utcnow)

    # A worker gone this long is forgotten: its row would only grow the table.
    FORGET_AFTER = timedelta(days=1)

    @classmethod
    def beat(cls, name: str) -> None:
        """Record that the worker called name is alive now."""
        now = utcnow()
        cls.insert(name=name, beat_at=now).on_conflict(
            conflict_target=[cls.name], update={cls.beat_at: now}).execute()
        cls.delete().where(cls.beat_at < now - cls.FORGET_AFTER).execute()

    @classmethod
    def ages(cls, max_age: float) -> tuple[float | None, int]:
        """(seconds since the newest heartbeat, None if there is none; how many workers beat within max_age)."""
        now = utcnow()
        newest = cls.select(fn.MAX(cls.beat_at)).scalar()
        alive = cls.select().where(cls.beat_at >= now - timedelta(seconds=max_age)).count()
        return (None if newest is None else max(0.0, (now - newest).total_seconds())), alive


class DeliveryMetric(BaseModel):
    """One counter of an account (see migration m0009): only ever added to, in the transaction that recorded what
    it counts."""

    account = ForeignKeyField(SmtpAccount, on_delete="CASCADE")
    name = CharField(max_length=16)
    label = CharField(max_length=32)
    value = BigIntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("account", "name", "label")

    @classmethod
    def add(cls, counts: Counter) -> None:
        """Add {(account id, name, label): amount} to the counters, creating those not there yet."""
        # In key order: two transactions adding to the same counters take their row locks in the same order.
        rows = [(*key, amount) for key, amount in sorted(counts.items()) if amount]
        if rows:
            cls.insert_many(rows, fields=[cls.account, cls.name, cls.label, cls.value]).on_conflict(
                conflict_target=[cls.account, cls.name, cls.label],
                update={cls.value: cls.value + EXCLUDED.value}).execute()
