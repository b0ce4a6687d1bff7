"""The `smtpdesk` command: the Flask CLI for this app plus db, users and serve."""
import signal
import threading
import time

import click
from flask import current_app
from flask.cli import FlaskGroup, pass_script_info, with_appcontext
from peewee import OperationalError

from webapp import db, maintenance, postgresql


def main():
    """Entry point of the `smtpdesk` console script."""
    from webapp import create_app_or_exit

    # The app is made by every command, --help included: a wrong vault key or setting stops each of them the same way.
    FlaskGroup(create_app=create_app_or_exit, help="smtpdesk: SMTP accounts of a notification system.")()


def init_app(app):
    """Add the smtpdesk commands to the app's `flask` CLI."""
    app.cli.add_command(db_group)
    app.cli.add_command(users_group)
    app.cli.add_command(serve)
    app.cli.add_command(worker)
    app.cli.add_command(send)
    app.cli.add_command(outbox)
    app.cli.add_command(maintenance.vault_group)
    app.cli.add_command(maintenance.backup)


@click.group("db", help="The database: the SQLite file, or PostgreSQL (SMTPDESK_DATABASE_URL).")
def db_group():
    pass


@db_group.command("upgrade")
@with_appcontext
def db_upgrade():
    """Create the database or apply the migrations it lacks."""
    from webapp.outbox import retention

    applied = db.upgrade()
    path = postgresql.shown(db.location(current_app.config))
    if applied:
        click.echo(f"Database {path}: applied {', '.join(applied)}.")
    else:
        click.echo(f"Database {path} is up to date (schema {db.schema_version_now()}).")
    with db.database.connection_context():
        if retention.needs_incremental_vacuum():
            click.echo(f"Database {path}: switching to auto_vacuum = INCREMENTAL, so that pruning can shrink the file: "
                       "a one-time VACUUM that rewrites it (on a large file, minutes)...")
            try:
                retention.enable_incremental_vacuum()
            except OperationalError as error:
                # Busy (another process writing) or no disk for the copy: the schema is up to date all the same.
                click.echo(f"Not switched: {error}. Pruning keeps the file from growing but cannot shrink it until "
                           "`smtpdesk db upgrade` runs again while no other smtpdesk process uses the database, with "
                           "as much free disk space as the file takes.", err=True)
            else:
                click.echo("Done.")


@db_group.command("copy")
@click.option("--to", "url", required=True, metavar="URL",
              help="The empty PostgreSQL database, postgresql://user@host:port/name (a password is better given in "
                   "PGPASSWORD or ~/.pgpass than in the URL, which other users of the machine can see).")
@with_appcontext
def db_copy(url):
    """Copy this installation's SQLite database, whole, into an empty PostgreSQL database (README, "Moving to
    PostgreSQL"): one transaction there, row counts checked before it commits."""
    from webapp.dbcopy import CopyError, copy_database

    if current_app.config.get("DATABASE_URL"):
        raise click.ClickException("This installation already uses PostgreSQL (SMTPDESK_DATABASE_URL); db copy "
                                   "copies the SQLite database (SMTPDESK_DATABASE): run it without that setting.")
    try:
        copy_database(current_app.config["DATABASE"], url, say=click.echo)
    except CopyError as error:
        raise click.ClickException(str(error)) from None


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
    db.upgrade()  # a fresh instance needs no separate `db upgrade` first
    password_hash = hash_password(password)
    # IMMEDIATE: the write lock first, as the web's writes take it; a deferred transaction that read before writing
    # fails at once with "database is locked" when a running server or worker committed in between.
    with db.database.connection_context(), db.database.atomic("IMMEDIATE"):
        if User.get_or_none(User.username == username):
            raise click.UsageError(f"A user named {username!r} already exists.")
        user = User.create(username=username, password_hash=password_hash, role=role)
        AuditEntry.record("create", actor=None, obj=user, changes={"role": [None, role]},
                          remote_addr="cli")
    forget_setup_code(current_app.instance_path)
    click.echo(f"Created {role} {username!r}.")


@users_group.command("set-password")
@click.argument("username")
@click.password_option(help="Asked for when not given.")
@with_appcontext
def users_set_password(username, password):
    """Set a user's password; every session they have open ends at its next request."""
    from webapp.auth.passwords import hash_password
    from webapp.models import AuditEntry, User

    if len(password) < 10:
        raise click.UsageError("Use a password of at least 10 characters.")
    username = username.strip().lower()
    with db.database.connection_context(), db.database.atomic():
        user = User.get_or_none(User.username == username)
        if user is None:
            raise click.UsageError(f"There is no user named {username!r}.")
        before = user.audit_snapshot()
        user.password_hash = hash_password(password)
        user.save(only=[User.password_hash])
        AuditEntry.record("update", actor=None, obj=user, changes=AuditEntry.diff(before, user.audit_snapshot()),
                          remote_addr="cli")
    click.echo(f"Password of {username!r} changed; their open sessions are signed out.")


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, or SMTPDESK_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 5000, or SMTPDESK_PORT).")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="waitress threads serving requests (default: SERVE_THREADS, 8).")
@click.option("--worker/--no-worker", "run_worker", default=None,
              help="Deliver the outbox from this process too (default: OUTBOX_IN_SERVER, on).")
@pass_script_info
def serve(info, host, port, threads, run_worker):
    """Apply migrations, print the first-run setup code if needed, and serve with waitress (and the outbox worker).

    One process for one host: waitress's threads serve the pages, and a thread runs the outbox worker. For more
    CPUs, run gunicorn and separate `smtpdesk worker` processes instead (README, "Serving").
    """
    import waitress

    from webapp.auth.passwords import issue_setup_code

    app = info.load_app()
    with app.app_context():
        db.upgrade()
        with db.database.connection_context():
            code = issue_setup_code(app.instance_path)
    host = host or app.config["HOST"]
    port = port or int(app.config["PORT"])
    threads = threads or int(app.config["SERVE_THREADS"])
    try:
        # Bound before the banner: a port in use is an error, not a misleading "serving on".
        server = waitress.create_server(app, host=host, port=port, threads=threads, ident="smtpdesk")
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host} port {port}: {error.strerror}") from None
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if code:
        click.echo("")
        click.echo("  First run: no user exists yet.")
        click.echo(f"  Open {url}/auth/setup and enter this one-time setup code: {code}")
        click.echo("")
    click.echo(f"smtpdesk serving on {url} (Ctrl+C to stop)")
    # SIGTERM ends waitress's loop as Ctrl+C does (it returns on SystemExit), so the worker stops gracefully; set
    # before the worker starts, so that a stop asked for during start-up stops it too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    background = None
    try:
        if app.config["OUTBOX_IN_SERVER"] if run_worker is None else run_worker:
            from webapp.outbox import WorkerThread

            background = WorkerThread(_make_worker(app))
            background.start()
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl+C before waitress listened for it: stop as SIGTERM does
    finally:
        server.close()
        if background is not None and background.thread.is_alive():
            click.echo("Stopping the outbox worker (messages in flight finish first)...")
            background.stop(timeout=background.worker.settings.smtp_deadline + 5)


# --- The outbox: worker, send, outbox ---------------------------------------------------------------------------


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


def _make_worker(app, **overrides):
    """A Worker configured from the app, with its periodic hooks: its heartbeat (GET /readyz), the report schedule
    and the retention."""
    from webapp.models import WorkerHeartbeat
    from webapp.outbox import OutboxSettings, Worker, connection, retention
    from webapp.outbox.worker import worker_name
    from webapp.schedules import run_due_schedules

    name = worker_name()

    def heartbeat():
        with connection():
            WorkerHeartbeat.beat(name)

    def run_schedules():
        # The worker's loop has no app context; the report's translations and filter form need one.
        with app.app_context(), connection():
            run_due_schedules()

    def prune_when_due():
        with connection():
            retention.run_if_due(app.config)

    overrides = {key: value for key, value in overrides.items() if value is not None}
    return Worker(OutboxSettings.from_config(app.config, **overrides), name=name,
                  hooks=[heartbeat, run_schedules, prune_when_due],
                  hook_seconds=float(app.config["WORKER_HEARTBEAT_SECONDS"]))


@click.command("worker")
@click.option("--batch-size", type=int, default=None, help="Notifications claimed at once (OUTBOX_BATCH_SIZE).")
@click.option("--concurrency", type=int, default=None, help="Accounts delivered in parallel (OUTBOX_CONCURRENCY).")
@click.option("--until-idle", is_flag=True, help="Deliver until nothing is queued, sending or retrying, then exit.")
@pass_script_info
def worker(info, batch_size, concurrency, until_idle):
    """Deliver the outbox in this process (besides or instead of `smtpdesk serve`); SIGTERM or Ctrl+C stops it
    gracefully: messages in flight finish, the rest of the batch goes back to the queue."""
    app = info.load_app()
    db.upgrade()
    delivering = _make_worker(app, batch_size=batch_size, concurrency=concurrency)
    if until_idle:
        try:
            delivering.run_until_idle(timeout=float("inf"))
        finally:
            delivering.close()
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"smtpdesk worker {delivering.name} delivering (SIGTERM or Ctrl+C to stop)")
    delivering.run_forever(stop)
    click.echo(f"smtpdesk worker {delivering.name} stopped")


@click.command("send")
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeat for several).")
@click.option("--cc", multiple=True, help="Copy recipient (repeat for several).")
@click.option("--bcc", multiple=True, help="Blind copy recipient: envelope only (repeat for several).")
@click.option("--subject", required=True)
@click.option("--body", default=None, help="The text body.")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the text body from a file ('-' for standard input).")
@click.option("--html-file", type=click.File("r", encoding="utf-8"), default=None, help="An optional HTML body.")
@click.option("--account", default=None, help="The account's name (default: the default account).")
@click.option("--idempotency-key", default=None, help="Repeat the command with the same key: queued only once.")
@with_appcontext
def send(to, cc, bcc, subject, body, body_file, html_file, account, idempotency_key):
    """Queue a notification; the worker delivers it (see `smtpdesk outbox`)."""
    from webapp.models import Notification
    from webapp.outbox import (
        IdempotencyConflict,
        NoDefaultAccount,
        NotificationError,
        connection,
        send_notification,
    )

    if (body is None) == (body_file is None):
        raise click.UsageError("Give the text body with exactly one of --body and --body-file.")
    db.upgrade()
    text = body if body is not None else body_file.read()
    try:
        notification_id = send_notification(
            to=list(to), cc=list(cc), bcc=list(bcc), subject=subject, text=text,
            html=html_file.read() if html_file else None, account=account, idempotency_key=idempotency_key,
            source="cli", created_by="cli")
    except NotificationError as error:
        problems = "; ".join(f"--{name.replace('_', '-')}: {message}" for name, message in error.field_errors.items())
        raise click.UsageError(problems) from None
    except NoDefaultAccount:
        raise click.ClickException("No enabled default SMTP account is set: give --account NAME.") from None
    except IdempotencyConflict as error:
        raise click.ClickException(f"This idempotency key was already used by notification {error.existing_id} "
                                   "with a different message.") from None
    with connection():
        notification = Notification.get_by_id(notification_id)
        click.echo(f"Queued notification {notification.id} through account {notification.account.name!r} "
                   f"(Message-ID {notification.message_id}).")


@click.group("outbox", invoke_without_command=True)
@click.option("--wait", is_flag=True, help="Show a progress bar until nothing is queued, sending or retrying.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds (exit 1).")
@click.option("--interval", type=float, default=0.5, show_default=True, help="With --wait: seconds between checks.")
@with_appcontext
@click.pass_context
def outbox(ctx, wait, timeout, interval):
    """Notifications by status; with --wait, a progress bar while the queue drains. `smtpdesk outbox prune` deletes
    old ones."""
    from webapp.outbox import ACTIVE, outbox_counts

    if ctx.invoked_subcommand is not None:
        return

    def active(counts):
        return sum(counts[status] for status in ACTIVE)

    db.upgrade()
    counts = outbox_counts()
    if wait and active(counts):
        deadline = None if timeout is None else time.monotonic() + timeout
        total = active(counts)
        with click.progressbar(length=total, label="Delivering", show_pos=True) as bar:
            done = 0
            while active(counts):
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(interval)
                counts = outbox_counts()
                left = active(counts)
                total = max(total, left + done)  # more were queued meanwhile
                bar.length = total
                progress = total - left - done
                if progress > 0:
                    bar.update(progress)
                    done += progress
    click.echo(", ".join(f"{status} {count}" for status, count in counts.items()))
    if wait and active(counts):
        raise click.ClickException("The outbox did not drain within the timeout.")


class Days(click.ParamType):
    """A period in days: "90d" (or "90"), from 1 to 3650 days, as the settings accept."""

    name = "Nd"

    def convert(self, value, param, ctx):
        from webapp.outbox.retention import MAX_DAYS, MIN_DAYS, valid_days

        text = str(value).strip().lower().removesuffix("d")
        days = int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else None
        if not valid_days(days):
            self.fail(f"{value!r} is not a number of days from {MIN_DAYS}d to {MAX_DAYS}d, such as 90d.", param, ctx)
        return days


@outbox.command("prune")
@click.option("--older-than", "delivery_days", type=Days(), default=None, metavar="Nd",
              help="Delete sent and failed notifications last changed longer ago than this, e.g. 90d (default: "
                   "Settings, \"Keep deliveries for\").")
@click.option("--audit-older-than", "audit_days", type=Days(), default=None, metavar="Nd",
              help="Delete audit entries older than this, e.g. 365d (default: Settings, \"Keep audit log for\").")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@with_appcontext
def outbox_prune(delivery_days, audit_days, dry_run):
    """Delete old notifications (sent or failed; never queued, sending or retrying) with their delivery attempts, and
    old audit entries, as the worker does every hour; then give SQLite's freed space back to the file system."""
    from webapp.outbox import retention

    db.upgrade()
    with db.database.connection_context():
        periods = retention.Retention.from_config(current_app.config)
        delivery_days = delivery_days or periods.delivery_days
        audit_days = audit_days or periods.audit_days
        if dry_run:
            _echo_pruned("Would delete:", retention.count(delivery_days, audit_days), delivery_days, audit_days)
            return
        pruned = retention.prune(delivery_days, audit_days, batch_size=periods.batch_size)
        with db.database.atomic():
            retention.audit(pruned, delivery_days, audit_days, remote_addr="cli")
    _echo_pruned("Deleted:", pruned, delivery_days, audit_days)


def _echo_pruned(heading, pruned, delivery_days, audit_days):
    click.echo(heading)
    click.echo(f"  notifications sent or failed, last changed over {delivery_days} days ago: {pruned.notifications}")
    click.echo(f"  their delivery attempts: {pruned.attempts}")
    click.echo(f"  audit entries over {audit_days} days old: {pruned.audit_entries}")
    if pruned.vacuumed_pages:
        click.echo(f"  free pages given back to the file system: {pruned.vacuumed_pages}")
