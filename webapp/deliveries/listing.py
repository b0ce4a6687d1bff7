"""The deliveries list at a million notifications: newest first, a page at a time after a keyset cursor (no OFFSET,
no count of the whole match), every filter walked along an index of migration m0005.

The page's query is written out here: its shape (which side of the recipient search SQLite starts from, the keyset
condition) is what keeps it fast, and it reads only the columns a row shows."""
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from webapp import db
from webapp.db import database
from webapp.models import Notification
from webapp.postgresql import is_postgresql

# Above every character a key can hold next: keys from `term` up to term + this are the keys starting with term.
_AFTER_PREFIX = "\U0010ffff"
# A search matching fewer keys than this starts from them: each match is fetched and the few sorted. A commoner one
# walks the list in its order and checks each row's keys in an index; around this boundary both cost about the same.
FEW_MATCHES = 2000

_KEYS = '"key" >= ? AND "key" < ?'
# Few matches: start from them (CROSS JOIN keeps them SQLite's outer loop), then the notification and its account.
_FROM_MATCHES = (f'(SELECT DISTINCT "notification_id" FROM "notification_search" WHERE {_KEYS}) AS "m" '
                 'CROSS JOIN "notification" AS "n" JOIN "smtp_account" AS "a" ON "a"."id" = "n"."account_id"')
_FROM_ALL = '"notification" AS "n" JOIN "smtp_account" AS "a" ON "a"."id" = "n"."account_id"'
# Many matches: they turn up soon while walking the list newest first; each row's keys are checked in an index.
_HAS_KEY = f'EXISTS (SELECT 1 FROM "notification_search" AS "s" WHERE "s"."notification_id" = "n"."id" AND {_KEYS})'
# Only what a row shows: the body and the attachments (megabytes, maybe) stay on disk.
_COLUMNS = ('"n"."id", "n"."status", "n"."to_addrs", "n"."cc_addrs", "n"."bcc_addrs", "n"."subject", '
            '"n"."attempts", "n"."last_code", "n"."last_reply", "n"."created_at", "n"."sent_at", "a"."name"')
# The cursor's time is read by SQLite itself (a subquery run once): a page is one query; an unknown id matches nothing.
_AT = '(SELECT "created_at" FROM "notification" WHERE "id" = ?)'
_OLDER = f'"n"."created_at" <= {_AT} AND ("n"."created_at" < {_AT} OR "n"."id" < ?)'
_NEWER = f'"n"."created_at" >= {_AT} AND ("n"."created_at" > {_AT} OR "n"."id" > ?)'


@dataclass(frozen=True)
class Criteria:
    """What the list is narrowed to: a status, an account id, a time range [since, until) in UTC, recipient keys
    starting with `term` (webapp.db.search_term()). None / "" leave it unnarrowed."""

    status: str | None = None
    account: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    term: str = ""


class Row:
    """One notification as a row of the list shows it, made from the values of _COLUMNS as read."""

    __slots__ = ("id", "status", "to_list", "copies", "subject", "attempts", "last_code", "last_reply", "created_at",
                 "created_iso", "sent_at", "sent_iso", "account_name")

    def __init__(self, values: tuple):
        (row_id, status, to_addrs, cc_addrs, bcc_addrs, subject, attempts, last_code, last_reply, created_at, sent_at,
         account_name) = values
        self.id, self.status, self.subject, self.attempts = row_id, status, subject, attempts
        self.last_code, self.last_reply, self.account_name = last_code, last_reply, account_name
        self.to_list = json.loads(to_addrs)
        self.copies = sum(len(json.loads(other)) for other in (cc_addrs, bcc_addrs) if other != "[]")
        # The times as datetimes (shown in the user's zone) and in ISO 8601 (<time datetime>).
        self.created_at, self.sent_at = _datetime(created_at), _datetime(sent_at)
        self.created_iso = self.created_at.isoformat()
        self.sent_iso = self.sent_at.isoformat() if self.sent_at else None


def _datetime(value: datetime | str | None) -> datetime | None:
    # PostgreSQL gives a timestamp as a datetime; SQLite gives the text it stored, str(datetime).
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclass
class Window:
    """One page of the list, newest first: its rows' values as read, the cursor it was asked with ({} on the first
    page, else {"before": id} or {"after": id}), and the ids the Newer / Older pages start from (None: nothing
    there)."""

    rows: list[tuple]
    cursor: dict = field(default_factory=dict)
    newer: int | None = None
    older: int | None = None

    @property
    def first(self) -> bool:
        return not self.cursor

    @cached_property
    def items(self) -> list[Row]:
        return [Row(values) for values in self.rows]


def tally() -> tuple[dict, str]:
    """({status: count} with zeros, a fingerprint that changes whenever any notification is added or changes),
    both from the few rows the m0005 triggers keep up to date."""
    counts = dict.fromkeys(Notification.STATUSES, 0)
    rows = sorted(db.execute('SELECT "status", "total", "changes" FROM "notification_tally"').fetchall())
    for status, total, _changes in rows:
        counts[status] = total
    return counts, hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def window(criteria: Criteria, size: int, before: int | None = None, after: int | None = None) -> Window:
    """The page of notifications matching `criteria` just older than notification `before`, just newer than
    `after`, or the newest one."""
    source = _source(criteria)
    if after is not None:
        rows = _rows(source, _NEWER, (after, after, after), "ASC", size + 1)
        if len(rows) > size:
            rows = rows[:size][::-1]
            return Window(rows, {"after": after}, newer=rows[0][0], older=rows[-1][0])
        # Fewer than a page is left above: that is the newest page, shown whole.
    elif before is not None:
        rows = _rows(source, _OLDER, (before, before, before), "DESC", size + 1)
        return Window(rows[:size], {"before": before}, newer=rows[0][0] if rows else None,
                      older=rows[size - 1][0] if len(rows) > size else None)
    rows = _rows(source, None, (), "DESC", size + 1)
    return Window(rows[:size], older=rows[size - 1][0] if len(rows) > size else None)


def row(notification_id: int) -> Row | None:
    """One notification as the list shows it (a row replaced after a retry)."""
    values = _rows((_FROM_ALL, ['"n"."id" = ?'], [notification_id]), None, (), "DESC", 1)
    return Row(values[0]) if values else None


def _source(criteria: Criteria) -> tuple[str, list, list]:
    """(FROM clause, WHERE conditions, their parameters in order) for these criteria."""
    conditions, params = [], []
    source = _FROM_ALL
    if criteria.term:
        keys = [criteria.term, criteria.term + _AFTER_PREFIX]
        matches = db.execute(
            f'SELECT COUNT(*) FROM (SELECT 1 FROM "notification_search" WHERE {_KEYS} LIMIT ?) AS "k"',
            (*keys, FEW_MATCHES)).fetchone()[0]
        if matches < FEW_MATCHES:
            source, params = _FROM_MATCHES, list(keys)
            conditions.append('"n"."id" = "m"."notification_id"')
        else:
            conditions.append(_HAS_KEY)
            params += keys
    for condition, value in (('"n"."status" = ?', criteria.status), ('"n"."account_id" = ?', criteria.account),
                             ('"n"."created_at" >= ?', criteria.since), ('"n"."created_at" < ?', criteria.until)):
        if value is not None:
            conditions.append(condition)
            # SQLite stores a time as str(datetime) and compares it as text.
            params.append(str(value) if isinstance(value, datetime) and not is_postgresql(database) else value)
    return source, conditions, params


def _rows(source: tuple, cursor: str | None, cursor_params: tuple, direction: str, limit: int) -> list[tuple]:
    clause, conditions, params = source
    conditions = conditions + [cursor] if cursor else conditions
    sql = (f'SELECT {_COLUMNS} FROM {clause} WHERE {" AND ".join(conditions) or "TRUE"} '
           f'ORDER BY "n"."created_at" {direction}, "n"."id" {direction} LIMIT ?')
    return db.execute(sql, (*params, *cursor_params, limit)).fetchall()
