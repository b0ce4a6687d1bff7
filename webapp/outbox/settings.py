"""The worker's settings (OUTBOX_* keys) and the outbox's limits and constants."""
import dataclasses
import random

from webapp.config import Defaults
from webapp.mail.connectors import parse_networks
from webapp.mail.errors import Step

WAITING = ("queued", "retrying")
ACTIVE = ("queued", "sending", "retrying")
FOOTER_SETTING = "footer_text"
LEASE_EXPIRED = "lease_expired"

# Bounds on one notification: clear errors instead of unbounded memory.
MAX_RECIPIENTS = 100        # to + cc + bcc
MAX_SUBJECT = 998           # one header line (RFC 5322 §2.1.1)
MAX_BODY_BYTES = 5 * 1024 * 1024          # text + HTML, UTF-8
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024   # all attachments together
MAX_IDEMPOTENCY_KEY = 255
MAX_CREATED_BY = 100

# Outcomes are recorded in one transaction per this many messages, or sooner when the first waited this long.
RECORD_EVERY = 50
RECORD_SECONDS = 0.5
# Steps where the session itself failed (not this message): the outcome applies to the rest of the account's group.
SESSION_STEPS = frozenset({Step.DNS, Step.CONNECT, Step.PROXY, Step.TLS, Step.CERTIFICATE, Step.GREETING,
                           Step.STARTTLS, Step.TOKEN, Step.AUTH})
# A worker that passed over an account because another was claiming it (PostgreSQL) claims again this soon.
CONTENDED_SECONDS = 0.02
LOCK_RETRY_SECONDS = 60     # how long a write waits, in total, for SQLite's lock before giving up


@dataclasses.dataclass(frozen=True)
class OutboxSettings:
    """The worker's knobs; from_config() reads the OUTBOX_* keys (see webapp/config.py Defaults)."""

    batch_size: int = 250                # notifications per claim
    lease_seconds: float = 180           # how long a claim is exclusive; must exceed 2 x (smtp_deadline + 1)
    poll_seconds: float = 1.0            # idle wait between empty claims
    concurrency: int = 4                 # accounts delivered in parallel by one worker (one thread each)
    max_attempts: int = 8                # then a transient failure becomes final
    max_age_seconds: float = 2 * 86400   # ... or when the notification is this old
    backoff_base_seconds: float = 30     # first retry after about this long, then doubling
    backoff_max_seconds: float = 3600    # never waiting longer than this between attempts
    # Per account, for those whose form leaves them empty (smtp_account.max_connections, .rate_per_minute):
    max_connections: int = 4             # workers connected to it at once (delivering or kept)
    rate_per_minute: int = 0             # attempts started in any 60 s (0 = no limit)
    smtp_timeout: float = 30             # connect and each read
    smtp_deadline: float = 60            # one message's whole dialogue (the opening included)
    session_idle_seconds: float = 15     # close a kept connection unused this long
    # Never connected to (OUTBOUND_BLOCKED_NETWORKS); the same defaults as the app's when built without a config.
    blocked_networks: tuple = Defaults.OUTBOUND_BLOCKED_NETWORKS  # parsed into ip_network objects below
    oauth_allow_loopback: bool = Defaults.OAUTH_ALLOW_LOOPBACK  # plain http to a loopback token URL (tests)
    # Failover to an account's backup (webapp.outbox.failover): so many relay failures within the window start a
    # cool-down of that many seconds.
    failover_after_failures: int = Defaults.FAILOVER_AFTER_FAILURES
    failover_window_seconds: float = Defaults.FAILOVER_WINDOW_SECONDS
    failover_cooldown_seconds: float = Defaults.FAILOVER_COOLDOWN_SECONDS

    KEYS = {
        "batch_size": "OUTBOX_BATCH_SIZE", "lease_seconds": "OUTBOX_LEASE_SECONDS",
        "poll_seconds": "OUTBOX_POLL_SECONDS", "concurrency": "OUTBOX_CONCURRENCY",
        "max_attempts": "OUTBOX_MAX_ATTEMPTS", "max_age_seconds": "OUTBOX_MAX_AGE_SECONDS",
        "backoff_base_seconds": "OUTBOX_BACKOFF_BASE_SECONDS", "backoff_max_seconds": "OUTBOX_BACKOFF_MAX_SECONDS",
        "max_connections": "OUTBOX_MAX_CONNECTIONS", "rate_per_minute": "OUTBOX_RATE_PER_MINUTE",
        "smtp_timeout": "OUTBOX_SMTP_TIMEOUT", "smtp_deadline": "OUTBOX_SMTP_DEADLINE",
        "session_idle_seconds": "OUTBOX_SESSION_IDLE_SECONDS",
        "blocked_networks": "OUTBOUND_BLOCKED_NETWORKS", "oauth_allow_loopback": "OAUTH_ALLOW_LOOPBACK",
        "failover_after_failures": "FAILOVER_AFTER_FAILURES", "failover_window_seconds": "FAILOVER_WINDOW_SECONDS",
        "failover_cooldown_seconds": "FAILOVER_COOLDOWN_SECONDS",
    }

    def __post_init__(self):
        object.__setattr__(self, "blocked_networks", parse_networks(self.blocked_networks))
        if self.lease_seconds < 2 * (self.smtp_deadline + 1):
            raise ValueError("OUTBOX_LEASE_SECONDS must be at least 2 x (OUTBOX_SMTP_DEADLINE + 1): a message must "
                             "finish well within its lease")
        if self.batch_size < 1 or self.concurrency < 1 or self.max_attempts < 1 or self.max_connections < 1:
            raise ValueError("OUTBOX_BATCH_SIZE, _CONCURRENCY, _MAX_ATTEMPTS and _MAX_CONNECTIONS must be positive")
        if int(self.failover_after_failures) < 1 or float(self.failover_cooldown_seconds) <= 0 \
                or float(self.failover_window_seconds) < 0:
            raise ValueError("FAILOVER_AFTER_FAILURES and FAILOVER_COOLDOWN_SECONDS must be positive, "
                             "FAILOVER_WINDOW_SECONDS not negative")

    @classmethod
    def from_config(cls, config, **overrides) -> "OutboxSettings":
        """The settings from a Flask config (or any mapping), keys missing there keeping their defaults."""
        values = {name: config[key] for name, key in cls.KEYS.items() if config.get(key) is not None}
        values.update(overrides)
        return cls(**values)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` attempts: exponential, capped, half of it jittered."""
        delay = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)
