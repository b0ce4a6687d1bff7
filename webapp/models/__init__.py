"""The data: people, the credential vault, network connectors, SMTP accounts, the outbox and the audit log."""
from webapp.models.accounts import SAVED_CREDENTIAL, Connector, Credential, SmtpAccount
from webapp.models.base import MAX_ROW_ID, BaseModel, DefaultFlagMixin, EncryptedSecretMixin, row_id, utcnow
from webapp.models.monitoring import DeliveryMetric, WorkerHeartbeat
from webapp.models.notifications import DeliveryAttempt, Notification
from webapp.models.records import AuditEntry, ScheduledReport, Setting
from webapp.models.users import ApiToken, User

MODELS = [User, Credential, Connector, SmtpAccount, AuditEntry, Setting, Notification, DeliveryAttempt,
          ApiToken, ScheduledReport, WorkerHeartbeat, DeliveryMetric]

__all__ = [
    "MAX_ROW_ID", "SAVED_CREDENTIAL", "ApiToken", "AuditEntry", "BaseModel", "Connector", "Credential",
    "DefaultFlagMixin", "DeliveryAttempt", "DeliveryMetric", "EncryptedSecretMixin", "MODELS", "Notification",
    "ScheduledReport", "Setting", "SmtpAccount", "User", "WorkerHeartbeat", "row_id", "utcnow",
]
