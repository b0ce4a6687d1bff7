"""Walking the whole app for the bad-input tests: every route of the URL map, every form its pages show.

Read from the app itself, so a new route, form or field is tried as soon as it exists.
"""
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from tests.support.factories import make_account, make_connector, make_credential, make_user
from tests.support.net import free_port
from webapp.models import ApiToken, Notification, ScheduledReport
from webapp.outbox import send_notification

INT_ARGUMENT = re.compile(r"<int:\w+>")
# Kinds of fields that hold typed text (a select's value is typed too, by anyone who does not use a browser).
TEXT_KINDS = {"text", "textarea", "search", "email", "password", "number", "url", "tel", "select", "hidden"}
DATE_KINDS = {"date", "datetime-local"}
# The CSRF token must stay valid for a form to be read at all.
KEEP = {"csrf_token"}
# Forms that end or change the session rather than take input (signing out, the language switch).
SESSION_FORMS = ("/auth/logout", "/auth/language")
MULTIPART_BOUNDARY = "walk-boundary-7c1f"


def world() -> dict:
    """One of everything, id 1 where a URL needs an id (a failed notification can be retried). Hosts are ports of
    127.0.0.1 nothing listens on: a form that sends or connects never leaves this machine."""
    owner = make_user("admin", username="owner")
    credential = make_credential()
    connector = make_connector(port=free_port())
    account = make_account(credential=credential, use_auth=True, connector=connector, use_connector=True,
                           is_default=True, host="127.0.0.1", port=free_port())
    failed = send_notification(to="ana@example.com", subject="Invoice", text="Ready.")
    Notification.update(status="failed").where(Notification.id == failed).execute()
    _token, clear = ApiToken.issue("integration", created_by=owner)
    ScheduledReport.create(recipients="ana@example.com", frequency="daily")
    return {"account": account, "token": clear}


def routes(app, methods=("GET", "POST")):
    """(endpoint, rule, method) for every rule of the URL map but static files."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(set(methods) & rule.methods):
            yield rule.endpoint, rule, method


def path_of(rule, row_id="1") -> str:
    """The rule's path with every <int:…> argument set to row_id."""
    return INT_ARGUMENT.sub(str(row_id), rule.rule)


@dataclass
class Form:
    """A form as a page shows it: where it goes, how, its fields ({name: (kind, [values offered])}) and the rules of
    those shown only under a condition ({name: "kind=a|b", its data-show-when})."""

    action: str
    method: str
    fields: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)

    def data(self, value_for=None) -> dict:
        """The form as a browser would send it (first radio or option, given values), with value_for(kind, name)
        replacing a field's value where it returns anything but None. A field given a value is sent with its
        condition met (the first value its rule allows), as only then can a browser's user type in it."""
        data, given = {}, []
        for name, (kind, values) in self.fields.items():
            chosen = value_for(kind, name) if value_for and name not in KEEP else None
            if chosen is None:
                chosen = "yes" if kind == "radio" and "yes" in values else (values[0] if values else "")
            else:
                given.append(name)
            data[name] = chosen
        for name in given:
            for condition in filter(None, self.conditions.get(name, "").split("&")):
                control, _, allowed = condition.partition("=")
                if control not in given and data.get(control) not in allowed.split("|"):
                    data[control] = allowed.split("|")[0]
        return data

    def send(self, client, data: dict, multipart: bool = False, **kwargs):
        """Submit data (values str or raw bytes) as this form does: a query string for GET, an urlencoded body for
        POST, or multipart/form-data when asked."""
        if self.method == "get":
            separator = "&" if "?" in self.action else "?"
            return client.get(self.action + separator + urlencode(data), **kwargs)
        if multipart:
            return client.post(self.action, data=_multipart(data),
                               content_type=f"multipart/form-data; boundary={MULTIPART_BOUNDARY}", **kwargs)
        return client.post(self.action, data=urlencode(data), content_type="application/x-www-form-urlencoded",
                           **kwargs)


def _multipart(data: dict) -> bytes:
    """A multipart/form-data body with the values as given (bytes sent as they are)."""
    parts = []
    for name, value in data.items():
        value = value if isinstance(value, bytes) else str(value).encode()
        parts.append(f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value + b"\r\n")
    return b"".join(parts) + f"--{MULTIPART_BOUNDARY}--\r\n".encode()


class _FormReader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms, self.current, self.select, self.textarea = [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("method", "get").lower() in ("get", "post"):
            self.current = Form(attrs.get("action") or "", attrs.get("method", "get").lower())
            self.forms.append(self.current)
        if self.current is None:
            return
        # The field macros wrap each field in <div id="NAME-field" data-show-when="...">.
        holder = attrs.get("id") or ""
        if attrs.get("data-show-when") and holder.endswith("-field"):
            self.current.conditions[holder.removesuffix("-field")] = attrs["data-show-when"]
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type", "text") not in ("submit", "button", "file", "image"):
            kind = attrs.get("type", "text")
            kind, values = self.current.fields.get(name, (kind, []))
            self.current.fields[name] = (kind, values + [attrs.get("value") or ""])
        elif tag == "textarea" and name:
            self.current.fields[name] = ("textarea", [""])
            self.textarea = name
        elif tag == "select" and name:
            self.current.fields[name] = ("select", [])
            self.select = name
        elif tag == "option" and self.select:
            self.current.fields[self.select][1].append(attrs.get("value") or "")
        elif tag == "button" and attrs.get("formaction"):
            self.forms.append(Form(attrs["formaction"], "post", self.current.fields, self.current.conditions))

    def handle_data(self, data):
        if self.textarea and data.strip():
            self.current.fields[self.textarea] = ("textarea", [data])

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def forms_on(html: str) -> list[Form]:
    """Every GET or POST form of a page, and one more for each button with its own formaction."""
    reader = _FormReader()
    reader.feed(html)
    return reader.forms


def every_form(app, client) -> list[Form]:
    """The forms of every page the client can open (ids set to 1) that take input (a visible field), each
    (action, method) once; not the ones that end or change the session."""
    found = {}
    for _endpoint, rule, _method in routes(app, ("GET",)):
        if rule.rule.startswith("/api/"):
            continue
        response = client.get(path_of(rule))
        if response.status_code != 200 or not response.mimetype == "text/html":
            continue
        for form in forms_on(response.get_data(as_text=True)):
            path = urlsplit(form.action).path
            takes_input = any(kind != "hidden" for kind, _values in form.fields.values())
            if takes_input and path.startswith("/") and path not in SESSION_FORMS:
                found.setdefault((path, form.method), form)
    return list(found.values())


def every_form_of_everyone(app, admin) -> list[tuple]:
    """(client, form) for every form the signed-in admin can open, then every form an anonymous visitor can."""
    anonymous = app.test_client()
    return [(admin, form) for form in every_form(app, admin)] + [(anonymous, form)
                                                                  for form in every_form(app, anonymous)]


def text_fields(walks):
    """(client, form, field name, kind) for each field of those forms that takes text (the CSRF token aside)."""
    for client, form in walks:
        for name, (kind, _values) in form.fields.items():
            if kind in TEXT_KINDS and name != "csrf_token":
                yield client, form, name, kind
