"""POST /api/v1/notifications to send, GET /api/v1/notifications/<id> to follow; bearer tokens only."""
import json

from flask import g, request, url_for
from werkzeug.exceptions import HTTPException

from webapp.api import bp
from webapp.api.errors import api_error, error_response
from webapp.models import ApiToken, DeliveryAttempt, Notification, SmtpAccount
from webapp.outbox import IdempotencyConflict, NoDefaultAccount, NotificationError, send_notification
from webapp.outbox.enqueue import lone_surrogates
from webapp.outbox.message import reply_words

ADDRESS_FIELDS = ("to", "cc", "bcc")
FIELDS = (*ADDRESS_FIELDS, "subject", "text", "html", "account", "reply_to", "return_path", "confirmation_email",
          "idempotency_key")


# --- Authentication and errors ------------------------------------------------------------------------------


@bp.before_request
def authenticate():
    """Every API call needs a usable token in `Authorization: Bearer ...` (unrevoked, its owner still allowed to
    send); the session is never used."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return api_error(401)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return api_error(401, "Use the Bearer scheme: Authorization: Bearer <token>.", error="invalid_token")
    g.api_token = ApiToken.authenticate(token.strip())
    if g.api_token is None:
        return api_error(401, _refusal(token.strip()), error="invalid_token")
    return None


def _refusal(token: str) -> str:
    """Why a token was refused, for whoever runs the calling system."""
    row = ApiToken.find(token)
    if row is not None and not row.revoked:
        return ("This API token's owner may no longer send notifications (deactivated, deleted, or no longer an "
                "administrator or operator). Ask an administrator for a new token.")
    return "This API token is unknown or was revoked."


@bp.after_request
def no_store(response):
    """Answers are never cached."""
    # Delivery states change from one second to the next, and answers may name recipients.
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(error: HTTPException):
    return error_response(error)


for _status in (400, 401, 403, 404, 405, 409, 413, 415, 500):
    bp.register_error_handler(_status, _http_error)


# --- Reading the request --------------------------------------------------------------------------------------


def _json_body():
    """The request's JSON object, or an error response (415 not JSON, 413 too large, 400 not an object)."""
    if not request.is_json:
        return None, api_error(415)
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413, before anything is parsed
    try:
        body = json.loads(raw)
    except ValueError as error:
        return None, api_error(400, f"The body is not valid JSON: {error}.", error="invalid_json")
    except RecursionError:
        # The decoder recurses once per level: [[[[…]]]] a hundred thousand deep exhausts Python's stack.
        return None, api_error(400, "The body's JSON is nested too deeply.", error="invalid_json")
    if not isinstance(body, dict):
        return None, api_error(400, "The body must be a JSON object.", error="invalid_json")
    return body, None


def _addresses(value):
    """A field that takes one address as a string or several as a list of strings: the list, or None if neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _read_fields(body: dict) -> tuple[dict, dict]:
    """The notification's arguments from the JSON body, and messages for fields of the wrong shape.

    Only the JSON's shape is checked here; send_notification() validates the values themselves.
    """
    errors = {name: "Unknown field." for name in body if name not in FIELDS}
    values = {name: body[name] for name in FIELDS if body.get(name) is not None}
    for name in ADDRESS_FIELDS:
        if name in values:
            values[name] = _addresses(values[name])
            if values[name] is None:
                errors[name] = "Give an address as a string, or several as a list of strings."
    account = values.get("account")
    if account is not None and (isinstance(account, bool) or not isinstance(account, (int, str))):
        errors["account"] = "Give the account's name (a string) or its id (a number)."
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None:
        if values.get("idempotency_key") not in (None, header_key):
            errors["idempotency_key"] = "The Idempotency-Key header and the idempotency_key field differ."
        values["idempotency_key"] = header_key
    return values, errors


# --- The notification as JSON ---------------------------------------------------------------------------------


def _time(value):
    return value.isoformat(timespec="seconds") + "Z" if value else None


def find(notification_id: int) -> Notification | None:
    """The notification with this id and its account's name (notification.account_name), or None."""
    return (Notification.select(Notification, SmtpAccount.name.alias("account_name"))
            .join(SmtpAccount, on=(Notification.account == SmtpAccount.id))
            .where(Notification.id == notification_id).objects().first())


def representation(notification: Notification) -> dict:
    """A notification (from find()) as the API shows it: where its delivery stands, every attempt, the timestamps."""
    # Every attempt recorded counts in notification.attempts (same transaction): none yet, nothing to read.
    attempts = (DeliveryAttempt.select().where(DeliveryAttempt.notification == notification.id)
                .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)) if notification.attempts else ()
    waiting = notification.status in ("queued", "retrying")
    return {
        "id": notification.id,
        "url": url_for("api.notification", notification_id=notification.id, _external=True),
        "status": notification.status,
        "account": {"id": notification.account_id, "name": notification.account_name},
        "to": notification.to_list,
        "cc": notification.cc_list,
        "bcc": notification.bcc_list,
        "subject": notification.subject,
        "message_id": notification.message_id,
        "idempotency_key": notification.idempotency_key,
        "overrides_ignored": notification.overrides_ignored,
        "attempts": notification.attempts,
        "last_reply": ({"code": notification.last_code, "text": reply_words(notification.last_reply),
                        "step": notification.last_step}
                       if notification.last_reply or notification.last_code else None),
        "created_at": _time(notification.created_at),
        "updated_at": _time(notification.updated_at),
        "next_attempt_at": _time(notification.next_attempt_at) if waiting else None,
        "sent_at": _time(notification.sent_at),
        "history": [
            {"started_at": _time(a.started_at), "duration_ms": a.duration_ms, "ok": a.ok, "code": a.code,
             "reply": None if a.reply is None else reply_words(a.reply), "step": a.step, "transient": a.transient}
            for a in attempts
        ],
    }


# --- The endpoints --------------------------------------------------------------------------------------------


@bp.post("/notifications")
def send():
    """Queue a notification: 202 with its id and URL; 200 with the first one for a repeated idempotency key."""
    body, problem = _json_body()
    if problem:
        return problem
    values, errors = _read_fields(body)
    if errors:
        return _invalid(errors)
    key = values.get("idempotency_key")
    # Only text can be a stored key (send_notification refuses anything else): a list, a lone surrogate or a NUL
    # (which PostgreSQL's text cannot hold) would reach SQL.
    seen_before = isinstance(key, str) and bool(key) and not lone_surrogates(key) and "\0" not in key and \
        Notification.select().where(Notification.idempotency_key == key).exists()
    try:
        notification_id = send_notification(
            to=values.get("to"), cc=values.get("cc", ()), bcc=values.get("bcc", ()),
            subject=values.get("subject"), text=values.get("text"), html=values.get("html"),
            account=values.get("account"), reply_to=values.get("reply_to"),
            return_path=values.get("return_path"), confirmation_email=values.get("confirmation_email"),
            idempotency_key=key, source="api", created_by=g.api_token.name,
        )
    except NotificationError as error:
        return _invalid(error.field_errors)
    except IdempotencyConflict:
        return api_error(409, "This idempotency key was already used for a different notification.",
                         error="idempotency_conflict")
    except NoDefaultAccount:
        return api_error(503, "No enabled default SMTP account is set, and the request names no account.",
                         error="no_default_account")
    notification = find(notification_id)
    status = 200 if seen_before else 202
    return representation(notification), status, {"Location": url_for("api.notification",
                                                                       notification_id=notification.id)}


def _invalid(field_errors: dict):
    # Messages about the JSON's shape come from here, about the values from send_notification(): English both.
    fields = {name: str(message) for name, message in field_errors.items()}
    return api_error(400, "Some fields are not valid: see fields.", error="invalid_fields", fields=fields)


@bp.get("/notifications/<int:notification_id>")
def notification(notification_id):
    """One notification: status, attempts, the server's last reply and the timestamps."""
    found = find(notification_id)
    if found is None:
        return api_error(404, "No notification has this id.")
    return representation(found)
