"""webapp/mail/'s code depends on no part of the web app (Flask, its extensions, WTForms, the forms, the models), and
the outbox's on no form or translation machinery (STYLE.md 3): checked on the import statements of every module of
both packages, those inside functions included. (Importing webapp.mail still runs webapp/__init__.py, which imports
Flask for the app factory; what matters is that nothing in mail/ uses it.)"""
import ast
from pathlib import Path

import pytest

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"
FORBIDDEN = {
    "mail": ("flask", "flask_babel", "flask_wtf", "wtforms", "flask_login", "webapp.forms", "webapp.models"),
    "outbox": ("flask_babel", "flask_wtf", "wtforms", "webapp.forms"),
}
MODULES = [(package, path) for package in FORBIDDEN for path in sorted((WEBAPP / package).glob("*.py"))]


def imported(source: str, package: str) -> set[str]:
    """Every module an import statement names (`from webapp import forms` names webapp.forms too); package: the
    dotted package of the file, for relative imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def forbidden_in(names: set[str], package: str) -> list[str]:
    return sorted(name for name in names
                  if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package]))


@pytest.mark.parametrize("package,path", MODULES, ids=[f"{p}/{path.name}" for p, path in MODULES])
def test_the_module_imports_nothing_its_package_must_not(package, path):
    names = imported(path.read_text(encoding="utf-8"), f"webapp.{package}")
    assert not forbidden_in(names, package), f"webapp/{package}/{path.name} imports {forbidden_in(names, package)}"


def test_both_packages_are_checked_module_by_module():
    names = {(package, path.name) for package, path in MODULES}
    assert {("mail", "__init__.py"), ("mail", "transport.py"), ("outbox", "__init__.py"),
            ("outbox", "enqueue.py")} <= names


@pytest.mark.parametrize("statement", [
    "import flask", "from flask import request", "import flask_babel as babel", "from webapp import forms",
    "from webapp.models import Notification", "def later():\n    from wtforms import ValidationError",
    "from .. import forms", "from ..models import SmtpAccount",
])
def test_the_check_sees_every_form_of_import(statement):
    assert forbidden_in(imported(statement, "webapp.mail"), "mail")
