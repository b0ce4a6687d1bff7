"""Realistic data for the layout and accessibility browser tests, written straight into a live server's database.

Run as `python -m tests.e2e.seed [SMTP_PORT]` with SMTPDESK_INSTANCE_PATH set: long Portuguese names and addresses,
a disabled account, an account that ignores certificate errors, test results with long summaries, credentials in
use, a connector, notifications in every status, an API token and a scheduled report. With SMTP_PORT, only a plain
account pointing at the test SMTP server on 127.0.0.1:SMTP_PORT.
"""
import json
import sys
from datetime import UTC, datetime, timedelta

from tests.support.factories import make_account, make_connector, make_credential, make_notification
from webapp import create_app
from webapp.models import ApiToken, DeliveryAttempt, ScheduledReport, User


def seed() -> None:
    """The realistic data set (run once per server)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    relay = make_credential(name="Relay corporativo (Microsoft 365)", username="notificacoes@empresa-exemplo.com.br",
                            description="Conta de serviço usada pelas notificações de cobrança e do portal",
                            allowed_hosts="smtp.office365.com\n*.empresa-exemplo.com.br")
    make_credential(name="SendGrid — API", username="apikey")
    # "Connect with the provider" on an edit page, connected (3) and not yet (4).
    google = dict(kind="oauth_refresh", authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
                  token_url="https://oauth2.googleapis.com/token", scope="https://mail.google.com/",
                  client_id="1234567890-abcdefghij.apps.googleusercontent.com")
    connected = make_credential(secret=None, name="Gmail — alertas do portal",
                                username="alertas@empresa-exemplo.com.br", **google)
    connected.set_secret("1//seeded-refresh-token", "refresh_token_encrypted")
    connected.save()
    make_credential(secret=None, name="Gmail — caixa da diretoria (a conectar)",
                    username="diretoria@empresa-exemplo.com.br", **google)
    proxy = make_connector(name="Proxy do escritório de São Paulo", host="proxy.sp.empresa-exemplo.com.br")
    main = make_account(name="Notificações do sistema", sender="Notificações <notificacoes@empresa-exemplo.com.br>",
                        reply_to="atendimento@empresa-exemplo.com.br", return_path="devolucoes@empresa-exemplo.com.br",
                        confirmation_email="confirmacoes-de-leitura@empresa-exemplo.com.br", is_default=True,
                        host="smtp.office365.com", secure=True, secure_type="tls", use_auth=True, credential=relay,
                        read_confirmation=True, footer_enabled=True, max_connections=3, rate_per_minute=30,
                        last_test_at=now, last_test_ok=True,
                        last_tls_verified=True, last_test_summary="250 2.0.0 OK <20261206.ABC@empresa-exemplo.com.br>")
    make_account(name="Cobrança e faturamento mensal", sender="Financeiro <cobranca@empresa-exemplo.com.br>",
                 reply_to="financeiro@empresa-exemplo.com.br", return_path="devolucoes-cobranca@empresa-exemplo.com.br",
                 confirmation_email="leitura@empresa-exemplo.com.br", host="mail.empresa-exemplo.com.br",
                 secure=True, secure_type="ssl", ignore_cert_errors=True, force_settings=True, use_connector=True,
                 connector=proxy, last_test_at=now, last_test_ok=False,
                 last_test_summary=json.dumps({
                     "ok": False, "step": "auth", "code": 535, "reply": "5.7.8 Authentication credentials invalid",
                     "message": "%(host)s rejected the username or secret.",
                     "params": {"host": "mail.empresa-exemplo.com.br"}}),
                 # Failing over to the default account (the report's badge) for a year: it has nothing queued.
                 backup_account=main, failover_failures=2, failover_since=now, failover_until=now + timedelta(days=365))
    make_account(name="Legado — servidor interno antigo", enabled=False,
                 sender="Sistema legado <nao-responda@legado.empresa-exemplo.com.br>",
                 reply_to="suporte@empresa-exemplo.com.br", return_path="devolucoes@legado.empresa-exemplo.com.br",
                 confirmation_email="leitura@legado.empresa-exemplo.com.br", host="10.0.12.34", port=2525)
    deliveries(now)
    owner = User.select().first()
    ApiToken.issue("Portal de cobrança — integração com o ERP", created_by=owner)
    # Due in a year: the server's worker would otherwise mail it through the seeded (unreachable) default account.
    ScheduledReport.create(recipients="diretoria@empresa-exemplo.com.br\nfinanceiro@empresa-exemplo.com.br",
                           frequency="weekly", filters="enabled=yes", next_run_at=now + timedelta(days=365),
                           created_by=owner)


def deliveries(now: datetime) -> None:
    """A notification in every status, with long recipients and replies; those on their way are due in a year (and
    the one sending holds its lease as long), so the server's own worker leaves them where they are."""
    later = now + timedelta(days=365)
    refused = {"ok": False, "step": "recipient", "code": 550,
               "reply": "5.1.1 <joao.silva@cliente-exemplo.com.br>: Recipient address rejected: User unknown",
               "message": "The server refused the recipient %(recipient)s.",
               "params": {"recipient": "joao.silva@cliente-exemplo.com.br"}}
    later_please = {"ok": False, "step": "data", "code": 451, "reply": "4.3.0 Mail server temporarily rejected message",
                    "message": "The server refused the message.", "params": {}}
    people = ["Maria Conceição <maria.conceicao@cliente-exemplo.com.br>", "financeiro@cliente-exemplo.com.br",
              "diretoria@cliente-exemplo.com.br", "contabilidade@escritorio-parceiro.com.br"]
    make_notification("sent", to=people[:2], cc=people[2:], subject="Fatura de dezembro — vencimento em 10/12",
                      attempts=1, last_code=250, last_reply=json.dumps(
                          {"ok": True, "code": 250, "reply": "2.0.0 OK <20261206.XYZ@empresa-exemplo.com.br>"}),
                      sent_at=now)
    failed = make_notification("failed", to=["joao.silva@cliente-exemplo.com.br"], subject="Senha alterada no portal",
                               attempts=1, last_code=550, last_step="recipient", last_reply=json.dumps(refused))
    retrying = make_notification("retrying", to=people, subject="Relatório semanal de cobrança (anexo em PDF)",
                                 attempts=2, last_code=451, last_step="data", last_reply=json.dumps(later_please),
                                 next_attempt_at=later)
    for notification, facts, transient in ((failed, refused, False), (retrying, later_please, True),
                                           (retrying, later_please, True)):
        DeliveryAttempt.create(notification=notification, started_at=now, duration_ms=840, ok=False,
                               code=facts["code"], reply=json.dumps(facts), step=facts["step"], transient=transient,
                               worker="worker-1")
    make_notification("queued", to=people[:1], subject="Boas-vindas ao portal do cliente", next_attempt_at=later)
    make_notification("sending", to=people[1:2], subject="Aviso de manutenção programada", lease_owner="worker-1",
                      lease_until=later, next_attempt_at=now)


def seed_local(smtp_port: int) -> None:
    """One plain account sending to the test SMTP server on 127.0.0.1:smtp_port."""
    make_account(name=f"Servidor de teste local {smtp_port}", sender="Teste <teste@example.com>",
                 reply_to="r@example.com", return_path="b@example.com", confirmation_email="c@example.com",
                 host="127.0.0.1", port=smtp_port)


if __name__ == "__main__":
    app = create_app()
    with app.app_context():
        if len(sys.argv) > 1:
            seed_local(int(sys.argv[1]))
        else:
            seed()
