"""People who sign in, and the API tokens programs use."""
import hashlib
import secrets
from datetime import timedelta

from flask_login import UserMixin
from peewee import JOIN, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from webapp.models.base import BaseModel, utcnow


class User(UserMixin, BaseModel):
    ROLES = ("admin", "operator", "auditor")
    # Signing out is audited as a logout of its own, not as a change of the user.
    AUDIT_IGNORED = BaseModel.AUDIT_IGNORED | {"session_generation"}

    username = CharField(max_length=64, unique=True)
    password_hash = CharField()
    role = CharField(max_length=16, default="operator")
    locale = CharField(max_length=8, null=True)
    active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)
    # Part of every session's id: signing out adds one, so no cookie signed before loads the user any more.
    session_generation = IntegerField(default=0)

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        """The session's user id: the row id plus a fingerprint of the password hash and the session generation.

        Changing the password or signing out changes the fingerprint, so every session signed in before ends at
        its next request (webapp.web loads users only when both parts match).
        """
        return f"{self.id}.{self.session_fingerprint()}"

    def session_fingerprint(self) -> str:
        """A keyed digest of the password hash and the session generation: it changes with either and reveals
        nothing about the hash."""
        import hmac

        from flask import current_app

        key = str(current_app.config["SECRET_KEY"]).encode()
        message = f"{self.session_generation or 0}:{self.password_hash or ''}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:20]

    def end_sessions(self) -> None:
        """End every session of this user, in every browser, at its next request (signing out does this).

        A cookie holds the whole session, so a copy taken before would otherwise stay valid until it expires.
        """
        User.update(session_generation=User.session_generation + 1).where(User.id == self.id).execute()

    ALLOWED = {
        "admin": frozenset({"view", "test", "send", "audit", "admin"}),
        "operator": frozenset({"view", "test", "send"}),
        "auditor": frozenset({"view", "audit"}),
    }

    def can(self, action: str) -> bool:
        """Whether this user's role allows an action: 'view', 'test', 'send', 'audit' or 'admin'."""
        return action in self.ALLOWED.get(self.role, ())

    @classmethod
    def count_admins(cls) -> int:
        return cls.select().where(cls.role == "admin", cls.active == True).count()  # noqa: E712

    def other_active_admin_exists(self) -> bool:
        """Whether an active admin other than this user exists (so this one may stop being one)."""
        others = User.select().where(User.role == "admin", User.active == True, User.id != self.id)  # noqa: E712
        return others.exists()

    def leaves_an_admin(self) -> bool:
        """Whether saving this row's (unsaved) role and active flag still leaves an active admin.

        Call inside database.atomic("IMMEDIATE") so two admins cannot demote each other at once.
        """
        return (self.role == "admin" and self.active) or self.other_active_admin_exists()


class ApiToken(BaseModel):
    """A bearer token for the HTTP API, stored as its sha256; the clear token is shown once.

    A token sends on behalf of its owner (created_by), so it may do what the owner may do now: it works only
    while the owner is active and their role may send. A token whose owner was deleted is refused: nobody's
    access vouches for it any more.
    """

    name = CharField(max_length=100)
    token_hash = CharField(max_length=64, unique=True)
    prefix = CharField(max_length=16)  # the first characters, for display
    created_by = ForeignKeyField(User, null=True, backref="api_tokens", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    # Recognisable in logs and secret scanners; the rest is 256 random bits.
    TOKEN_PREFIX = "smtpdesk_"
    # last_used_at is rewritten at most this often: a busy client must not turn every call into a write.
    TOUCH_EVERY = timedelta(minutes=1)

    @staticmethod
    def hash_token(token: str) -> str:
        """The stored form of a token: sha256 hex (a random 256-bit token needs no slow hash)."""
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    @classmethod
    def issue(cls, name: str, created_by) -> tuple["ApiToken", str]:
        """Create a token owned by a user; return the row and the clear token, which is never stored and shown once."""
        token = cls.TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls.create(name=name, token_hash=cls.hash_token(token), prefix=token[:len(cls.TOKEN_PREFIX) + 6],
                         created_by=created_by)
        return row, token

    @classmethod
    def with_owners(cls):
        """Tokens with their owner read in the same query (token.created_by, None when the owner was deleted)."""
        return cls.select(cls, User).join(User, JOIN.LEFT_OUTER, on=(cls.created_by == User.id), attr="created_by")

    @classmethod
    def find(cls, token: str) -> "ApiToken | None":
        """The token with this clear text and its owner, whether usable or not, or None."""
        return cls.with_owners().where(cls.token_hash == cls.hash_token(token)).first()

    @classmethod
    def authenticate(cls, token: str) -> "ApiToken | None":
        """The token with this clear text if it may be used now (see usable), else None; records when it was last
        used."""
        row = cls.find(token)
        if row is None or not row.usable:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > cls.TOUCH_EVERY:
            cls.update(last_used_at=now).where(cls.id == row.id).execute()
            row.last_used_at = now
        return row

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def owner_may_send(self) -> bool:
        """Whether the owner exists, is active and has a role that may send."""
        owner = self.created_by
        return owner is not None and owner.active and owner.can("send")

    @property
    def usable(self) -> bool:
        """Whether API calls with this token are accepted now: not revoked, and its owner may send."""
        return not self.revoked and self.owner_may_send
