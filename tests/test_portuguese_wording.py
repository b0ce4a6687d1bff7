"""pt-BR as a Brazilian reads it: plurals from 0, one date format, curly quotes, gender agreement and sentences
that say what they mean."""
import re
from datetime import datetime

from tests.support.factories import make_account, make_notification
from tests.test_translations import messages, read_catalog, translations_of
from webapp.models import AuditEntry, SmtpAccount

SHORT_DATE_TIME = re.compile(r"\b\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}\b")


def test_zero_takes_the_plural(admin):
    admin.use_language("pt_BR")
    assert re.search(r"\b0 contas\b", admin.get("/accounts/").get_data(as_text=True))
    assert re.search(r"\b0 notificações\b", admin.get("/deliveries/").get_data(as_text=True))
    make_account(name="Main")
    assert re.search(r"\b1 conta\b", admin.get("/accounts/").get_data(as_text=True))


def test_a_notification_is_criada_em(admin):
    make_notification()
    admin.use_language("pt_BR")
    assert "Criada em" in admin.get("/deliveries/").get_data(as_text=True)
    assert "Criada em" in admin.get("/deliveries/1").get_data(as_text=True)
    assert "Criado em" in admin.get("/tokens/").get_data(as_text=True)  # a token is masculine


def test_every_screen_writes_a_moment_one_way(admin):
    moment = datetime(2026, 12, 6, 3, 16, 22)
    account = make_account(name="Main")
    SmtpAccount.update(last_test_at=moment, last_test_ok=True).where(SmtpAccount.id == account.id).execute()
    AuditEntry.update(at=moment).execute()
    admin.use_language("pt_BR")
    report = admin.get("/accounts/").get_data(as_text=True)
    audit = admin.get("/audit/").get_data(as_text=True)
    for page in (report, audit):
        assert ">06/12/2026 03:16:22<" in page
        assert not re.search(r"\d de [a-zç]{3}\. de \d{4}", page)


def test_portuguese_quotes_are_curly():
    straight = [(m.id, text) for m in messages(read_catalog()) for text in translations_of(m) if '"' in text]
    assert not straight


def test_the_sentences_the_issue_found_read_well():
    texts = " ".join(text for m in messages(read_catalog()) for text in translations_of(m))
    for awkward in ("Desativá-la pode ser desfeito", "CSV diária", "ainda não salva: nada foi salvo",
                    "— nenhum definido —"):
        assert awkward not in texts
