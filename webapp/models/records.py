"""The audit log, admin settings and scheduled reports."""
import json
from datetime import datetime

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from webapp.models.base import BaseModel, utcnow
from webapp.models.users import User


class AuditEntry(BaseModel):
    at = DateTimeField(default=utcnow, index=True)
    actor = ForeignKeyField(User, null=True, backref="audit_entries", on_delete="SET NULL")
    actor_name = CharField(max_length=64, default="")
    action = CharField(max_length=32, index=True)  # create, update, delete, login, login_failed, logout, ...
    object_type = CharField(max_length=32, default="", index=True)
    object_id = IntegerField(null=True)
    object_name = CharField(max_length=255, default="")
    changes_json = TextField(default="{}")
    remote_addr = CharField(max_length=64, default="")

    CHANGED = "changed"

    @property
    def changes(self) -> dict:
        """{field: [old, new]} or {field: "changed"} for secrets."""
        return json.loads(self.changes_json or "{}")

    @classmethod
    def diff(cls, before: dict | None, after: dict | None) -> dict:
        """What differs between two audit snapshots; secrets appear only as "changed"."""
        before, after = before or {}, after or {}
        changes = {}
        for name in sorted(set(before) | set(after)):
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            if name in BaseModel.AUDIT_SECRETS:
                changes[name] = cls.CHANGED
            else:
                changes[name] = [_jsonable(old), _jsonable(new)]
        return changes

    @classmethod
    def record(cls, action: str, *, actor=None, remote_addr: str = "", obj=None, object_type: str = "",
               object_name: str = "", changes: dict | None = None) -> "AuditEntry":
        """Write one audit line; call it inside the transaction that made the change."""
        if obj is not None:
            object_type = object_type or obj.audit_type()
            object_name = object_name or str(getattr(obj, "name", None) or getattr(obj, "username", ""))
        return cls.create(
            actor=actor if actor is not None and getattr(actor, "id", None) else None,
            actor_name=getattr(actor, "username", "") or "",
            action=action,
            object_type=object_type,
            object_id=getattr(obj, "id", None),
            object_name=object_name[:255],
            changes_json=json.dumps(changes or {}, ensure_ascii=False),
            remote_addr=(remote_addr or "")[:64],
        )


def _jsonable(value):
    return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value


class Setting(BaseModel):
    """An admin setting as key/value text (e.g. "footer_text", the system footer)."""

    key = CharField(max_length=64, unique=True)
    value = TextField(default="")

    @classmethod
    def get_value(cls, key: str, default: str = "") -> str:
        """The stored value of key, or default when it was never set."""
        row = cls.get_or_none(cls.key == key)
        return row.value if row is not None else default

    @classmethod
    def set_value(cls, key: str, value: str) -> None:
        """Store value under key (insert or replace)."""
        cls.insert(key=key, value=value or "").on_conflict(
            conflict_target=[cls.key], update={cls.value: value or ""}).execute()


class ScheduledReport(BaseModel):
    """The accounts report e-mailed as CSV to chosen recipients, daily, weekly or monthly."""

    FREQUENCIES = ("daily", "weekly", "monthly")

    recipients = TextField(default="")  # one address per line
    frequency = CharField(max_length=8, default="daily")
    filters = TextField(default="")  # the report's query string
    next_run_at = DateTimeField(default=utcnow, index=True)
    last_run_at = DateTimeField(null=True)
    last_result = TextField(null=True)
    created_by = ForeignKeyField(User, null=True, backref="scheduled_reports", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.splitlines() if line.strip()]
