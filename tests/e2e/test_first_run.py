"""A new admin's first minutes in a real browser: setup code, first admin, language switch."""
import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


def test_first_run_setup_then_language_switch(live_server, page: Page):
    page.goto(live_server.url)
    expect(page).to_have_url(re.compile(r"/auth/setup$"))

    page.get_by_label("Código de configuração").fill(live_server.setup_code)
    page.get_by_label("Nome de usuário do administrador").fill("admin")
    page.get_by_label("Senha", exact=True).fill(PASSWORD)
    page.get_by_label("Repita a senha").fill(PASSWORD)
    page.get_by_role("button", name="Criar administrador").click()

    expect(page).to_have_url(re.compile(r"/accounts/$"))
    expect(page.get_by_role("heading", name="Configuração SMTP")).to_be_visible()

    page.get_by_role("button", name="EN", exact=True).click()
    expect(page.get_by_role("heading", name="SMTP Configuration")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="SMTP Configuration")).to_be_visible()

    # The setup page is gone once an admin exists.
    assert page.request.get(f"{live_server.url}/auth/setup").status == 404
