"""JSON errors of the HTTP API: {"error": code, "message": text[, "fields": {field: message}]}.

The API speaks English to the programs that call it, whatever language the UI is in.
"""
from flask import jsonify
from werkzeug.exceptions import HTTPException

# A short machine-readable code and an English sentence for each status the API answers with.
STATUS_ERRORS = {
    400: ("bad_request", "The request is not valid JSON or not a JSON object."),
    401: ("unauthorized", "Send an API token: Authorization: Bearer <token>."),
    403: ("forbidden", "This token may not do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    409: ("conflict", "The request conflicts with an earlier one."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the body as JSON, with Content-Type: application/json."),
    500: ("internal_error", "Something went wrong on our side. The error was logged; try again later."),
    503: ("unavailable", "The service cannot take this request right now."),
}
REALM = 'Bearer realm="smtpdesk"'


def api_error(status: int, message: str | None = None, *, error: str | None = None, fields: dict | None = None,
              headers: dict | None = None):
    """A JSON error response: the status's code and sentence unless given, per-field messages when any."""
    default_error, default_message = STATUS_ERRORS.get(status, STATUS_ERRORS[500])
    body = {"error": error or default_error, "message": message or default_message}
    if fields:
        body["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM + ('' if error is None else f', error="{error}"')
    response.headers.update(headers or {})
    return response


def error_response(error):
    """Any HTTP error raised under /api/ (unknown address, wrong method, oversized body, ...) as JSON."""
    # An unexpected exception (500) was logged by Flask, with its traceback, before it reached here.
    status = error.code if isinstance(error, HTTPException) and error.code else 500
    response = api_error(status)
    if status == 405 and isinstance(error, HTTPException):
        allowed = error.get_response().headers.get("Allow")
        if allowed:
            response.headers["Allow"] = allowed
    return response
