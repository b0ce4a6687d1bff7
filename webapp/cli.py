"""The `smtpdesk` command: the Flask CLI for this app plus db, users and serve."""
import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from webapp import db


def main():
    """Entry point of the `smtpdesk` console script."""
    from webapp import create_app

    FlaskGroup(create_app=create_app, help="smtpdesk: SMTP accounts of a notification system.")()


def init_app(app):
    app.cli.add_command(db_group)
    app.cli.add_command(users_group)
    app.cli.add_command(serve)


@click.group("db", help="The SQLite database.")
def db_group():
    pass


@db_group.command("upgrade")
@with_appcontext
def db_upgrade():
    """Create the database or apply the migrations it lacks."""
    applied = db.upgrade()
    path = current_app.config["DATABASE"]
    if applied:
        click.echo(f"Database {path}: applied {', '.join(applied)}.")
    else:
        click.echo(f"Database {path} is up to date (schema {db.schema_version_now()}).")


@click.group("users", help="People who sign in.")
def users_group():
    pass


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "operator", "auditor"]), default="admin", show_default=True)
@click.password_option(help="Asked for when not given.")
@with_appcontext
def users_create(username, role, password):
    """Create a user (the first admin, or anyone later)."""
    from webapp.auth.passwords import forget_setup_code, hash_password
    from webapp.models import AuditEntry, User

    if len(password) < 10:
        raise click.UsageError("Use a password of at least 10 characters.")
    username = username.strip().lower()
    with db.database.connection_context(), db.database.atomic():
        if User.get_or_none(User.username == username):
            raise click.UsageError(f"A user named {username!r} already exists.")
        user = User.create(username=username, password_hash=hash_password(password), role=role)
        AuditEntry.record("create", actor=None, obj=user, changes={"role": [None, role]},
                          remote_addr="cli")
    forget_setup_code(current_app.instance_path)
    click.echo(f"Created {role} {username!r}.")


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, or SMTPDESK_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 5000, or SMTPDESK_PORT).")
@click.option("--threads", type=int, default=8, show_default=True)
@with_appcontext
def serve(host, port, threads):
    """Apply migrations, print the first-run setup code if needed, and serve with waitress."""
    import waitress

    from webapp.auth.passwords import issue_setup_code

    app = current_app._get_current_object()
    db.upgrade()
    host = host or app.config["HOST"]
    port = port or int(app.config["PORT"])
    with db.database.connection_context():
        code = issue_setup_code(app.instance_path)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if code:
        click.echo("")
        click.echo("  First run: no user exists yet.")
        click.echo(f"  Open {url}/auth/setup and enter this one-time setup code: {code}")
        click.echo("")
    click.echo(f"smtpdesk serving on {url} (Ctrl+C to stop)", err=False)
    waitress.serve(app, host=host, port=port, threads=threads, ident="smtpdesk")
