"""smtpdesk: the SMTP-account desk of an e-mail notification system."""
import os
import sys
from pathlib import Path

from flask import Flask, redirect, url_for

from webapp import config, db, logs
from webapp.extensions import babel, csrf, htmx, login_manager, select_locale
from webapp.vault import VaultKeyError, check_keys, vault

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config=None):
    """Build the smtpdesk app: instance config, SMTPDESK_* variables (or test_config), extensions, screens."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("SMTPDESK_INSTANCE_PATH") or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_object(config.Defaults)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("SMTPDESK")
    else:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    config.load_keys(app.config, app.instance_path)
    logs.configure_logging(app)
    config.apply_reverse_proxy(app)

    config.check_settings(app.config)
    register_extensions(app)
    check_keys(db.location(app.config), app.config["VAULT_KEYS_SOURCE"])  # a wrong key: refuse to start, clearly
    register_blueprints(app)
    register_hooks(app)
    register_cli(app)
    return app


def create_app_or_exit():
    """create_app() for a real start (every `smtpdesk` command; gunicorn --preload "webapp:create_app_or_exit()"): a
    vault key or a setting that cannot work is one line on stderr naming it, and exit status 2, not a traceback."""
    try:
        return create_app()
    except (VaultKeyError, config.ConfigError) as error:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def register_extensions(app):
    db.init_app(app)
    vault.init(app.config["VAULT_KEYS"], app.config["VAULT_KEY_FILE"])
    babel.init_app(app, locale_selector=select_locale)
    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)


def register_blueprints(app):
    from webapp import (
        accounts,
        api,
        audit,
        auth,
        connectors,
        credentials,
        deliveries,
        health,
        schedules,
        settings,
        tokens,
        users,
    )
    from webapp.web import RowIdConverter

    # Before any route is added: every <int:…> id in a URL is then one SQLite can hold.
    app.url_map.converters["int"] = RowIdConverter
    for module in (auth, accounts, credentials, connectors, users, audit, deliveries, tokens, settings, schedules, api,
                   health):
        app.register_blueprint(module.bp)

    @app.get("/")
    def home():
        """The landing page is the SMTP accounts report."""
        return redirect(url_for("accounts.index"))


def register_hooks(app):
    from webapp import web
    from webapp.models import Credential

    web.init_app(app)
    Credential.watch_refresh_token_rotation()


def register_cli(app):
    from webapp import cli

    cli.init_app(app)
