"""The pt-BR interface speaks Portuguese where it showed English: a test's outcome on the report (kept as facts and
said in the reader's language), a changed secret in the audit log, the CSV file name."""
import re

from tests.support.factories import credential_form, make_credential, summary_of
from tests.support.outbox import account_for
from webapp.models import SmtpAccount

ENGLISH = re.compile(r"does not offer|so the connection|changed|smtp-accounts|Delivery failed|authentication\b")


def words_of(html: str) -> str:
    """What a reader sees of a page: its text and its tooltips, without tags and htmx attributes."""
    titles = " ".join(re.findall(r'title="([^"]*)"', html))
    return re.sub(r"<[^>]*>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)) + " " + titles


def test_a_failed_test_reads_in_each_readers_language_on_the_report(admin, smtp_server):
    server = smtp_server("plain")  # offers no STARTTLS
    account = account_for(server, name="Relay", secure=True, secure_type="tls")
    admin.use_language("en").post(f"/accounts/{account.id}/test",
                                  data={"to": "ops@example.com", "subject": "s", "body": "b"})
    assert SmtpAccount.get_by_id(account.id).last_test_ok is False
    assert summary_of(account, "en") == "STARTTLS: 127.0.0.1 does not offer STARTTLS, so the connection cannot be " \
                                        "encrypted."

    pt = summary_of(account, "pt_BR")
    assert pt.startswith("STARTTLS: 127.0.0.1 não oferece STARTTLS")
    report = words_of(admin.use_language("pt_BR").get("/accounts/").get_data(as_text=True))
    assert "não oferece STARTTLS" in report and not ENGLISH.search(report)
    csv_text = admin.get("/accounts/export.csv").get_data(as_text=True)
    assert "não oferece STARTTLS" in csv_text and not ENGLISH.search(csv_text)


def test_a_refused_login_during_delivery_reads_in_portuguese(app, smtp_server):
    from tests.support.outbox import drain
    from webapp.outbox import send_notification
    server = smtp_server(users={"mailer@example.com": "the-right-one"})
    account = account_for(server, users={"mailer@example.com": "a-wrong-one"})
    send_notification(to=["ops@example.com"], subject="s", text="t")
    drain()
    assert summary_of(account, "pt_BR").startswith("Falha na entrega: autenticação: 535")


def test_a_changed_secret_reads_alterado_in_the_portuguese_audit_log(admin):
    credential = make_credential(name="relay login")
    admin.post(f"/credentials/{credential.id}/edit",
               data=credential_form(name="relay login", secret="a-New-secret-42"))
    admin.use_language("pt_BR")
    page = words_of(admin.get("/audit/?object_type=credential").get_data(as_text=True))
    assert "Segredo: alterado" in page and not ENGLISH.search(page)
    csv_text = admin.get("/audit/export.csv?object_type=credential").get_data(as_text=True)
    assert "Segredo: alterado" in csv_text and not ENGLISH.search(csv_text)


def test_the_csv_file_names_are_portuguese(admin):
    admin.use_language("pt_BR")
    for url, name in (("/accounts/export.csv", "contas-smtp.csv"), ("/audit/export.csv", "log-de-auditoria-")):
        disposition = admin.get(url).headers["Content-Disposition"]
        assert name in disposition and not ENGLISH.search(disposition)
