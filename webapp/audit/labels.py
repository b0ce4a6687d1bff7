"""How audit entries read: translated action, object type and field labels, and the changes as text."""
from flask_babel import gettext as _

from webapp.accounts.columns import AUDIT_LABELS
from webapp.credentials.forms import KIND_LABELS as CREDENTIAL_KIND_LABELS
from webapp.models import AuditEntry
from webapp.translation import lazy_gettext as _l
from webapp.web import role_label

ACTION_LABELS = {
    "create": _l("created"),
    "update": _l("updated"),
    "delete": _l("deleted"),
    "login": _l("signed in"),
    "login_failed": _l("sign-in failed"),
    "login_locked": _l("sign-in refused: too many failures"),
    "logout": _l("signed out"),
    "make_default": _l("made default"),
    "unset_default": _l("default unset"),
    "enable": _l("enabled"),
    "disable": _l("disabled"),
    "test": _l("tested"),
    "revoke": _l("revoked"),
    "retry": _l("retried"),
    "connect": _l("connected with the provider"),
    "prune": _l("pruned"),
}

OBJECT_TYPE_LABELS = {
    "smtp_account": _l("SMTP account"),
    "credential": _l("credential"),
    "connector": _l("network connector"),
    "user": _l("user"),
    "api_token": _l("API token"),
    "notification": _l("notification"),
    "scheduled_report": _l("scheduled report"),
    "setting": _l("setting"),
    "retention": _l("retention"),
}

FIELD_LABELS = {
    "name": _l("Name"),
    "username": _l("Username"),
    "secret_encrypted": _l("Secret"),
    "password_encrypted": _l("Password"),
    "password_hash": _l("Password"),
    "description": _l("Description"),
    "allowed_hosts": _l("Allowed hosts"),
    "kind": _l("Type"),
    "host": _l("Host"),
    "port": _l("Port"),
    "remote_dns": _l("Resolve names at the proxy"),
    "is_default": _l("Default"),
    "role": _l("Role"),
    "active": _l("Active"),
    "locale": _l("Language"),
    # A test's outcome (action "test"): Test configuration, Test these settings, Test connector.
    "ok": _l("Succeeded"),
    "step": _l("Failed step"),
    "code": _l("Server reply code"),
    "to": _l("Sent to"),
    "tls": "TLS",
    "target": _l("Destination"),
    "settings": _l("Settings"),
}

# Labels that depend on the object's type; other fields fall back to FIELD_LABELS.
TYPE_FIELD_LABELS = {
    "smtp_account": AUDIT_LABELS,
    "connector": {
        "is_default": _l("System default connector"),
        "default_connector": _l("System default"),  # the change "previous default → this one"
    },
    "credential": {
        "kind": _l("Credential type"),
        "username": _l("Username"),
        "token_url": _l("Token URL"),
        "authorization_url": _l("Authorization URL"),
        "client_id": _l("Client ID"),
        "client_secret_encrypted": _l("Client secret"),
        "scope": _l("Scope"),
        "refresh_token_encrypted": _l("Refresh token"),
        "service_account_key_encrypted": _l("Service account JSON key"),
        "service_account_email": _l("Service account"),
        "service_account_key_id": _l("Key ID"),
    },
    "api_token": {"prefix": _l("Token"), "revoked_at": _l("Revoked")},
    "notification": {"status": _l("Status")},
    "scheduled_report": {
        "recipients": _l("Recipients"),
        "frequency": _l("Frequency"),
        "filters": _l("Filters"),
        "next_run_at": _l("Next sending"),
        "last_run_at": _l("Last sending"),
        "last_result": _l("Result"),
        "created_by": _l("Created by"),
    },
    "setting": {
        "footer_text": _l("Footer text"),
        "retention_delivery_days": _l("Keep deliveries for (days)"),
        "retention_audit_days": _l("Keep audit log for (days)"),
    },
    # `smtpdesk outbox prune`: the periods it used and what it deleted.
    "retention": {
        "delivery_days": _l("Keep deliveries for (days)"),
        "notifications": _l("Notifications deleted"),
        "audit_days": _l("Keep audit log for (days)"),
        "audit_entries": _l("Audit entries deleted"),
    },
}

# Long values (descriptions, host lists) are cut in the table; the CSV keeps them whole.
SHORT_VALUE = 80


def action_label(code: str) -> str:
    """The translated label of an action code; an unknown code as it is."""
    return str(ACTION_LABELS.get(code, code))


def object_type_label(table_name: str) -> str:
    """The translated name of an object type (a table name); an unknown one as it is."""
    return str(OBJECT_TYPE_LABELS.get(table_name, table_name))


def field_label(object_type: str, name: str) -> str:
    """The label a field has on its screen, else its column name."""
    label = TYPE_FIELD_LABELS.get(object_type, {}).get(name) or FIELD_LABELS.get(name)
    return str(label or name)


def actor_label(entry: AuditEntry) -> str:
    """Who did it: the user's name, else "command line" for the CLI, else "system"."""
    if entry.actor_name:
        return entry.actor_name
    return _("command line") if entry.remote_addr == "cli" else _("system")


def value_text(name: str, value, short: bool = False) -> str:
    """One old or new value as the audit log shows it."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if name == "role":
        return role_label(value)
    if name == "kind" and value in CREDENTIAL_KIND_LABELS:  # a connector's kinds are other words
        return str(CREDENTIAL_KIND_LABELS[value])
    text = " ".join(str(value).split()) if short else str(value)
    if short and len(text) > SHORT_VALUE:
        text = text[:SHORT_VALUE - 1] + "…"
    return text


def change_lines(entry: AuditEntry, short: bool = False) -> list[str]:
    """The entry's changes as "field: old → new" lines; secrets only as "field: changed"."""
    lines = []
    changed = _("changed")  # outside the f-string, where message extraction finds it
    for name, change in entry.changes.items():
        label = field_label(entry.object_type, name)
        if name in AuditEntry.AUDIT_SECRETS or change == AuditEntry.CHANGED:
            lines.append(f"{label}: {changed}")
        elif isinstance(change, (list, tuple)) and len(change) == 2:
            old, new = change
            lines.append(f"{label}: {value_text(name, old, short)} → {value_text(name, new, short)}")
        else:
            lines.append(f"{label}: {value_text(name, change, short)}")
    return lines
