"""`smtpdesk vault` (key rotation with no downtime) and `smtpdesk backup` (an online copy of the database)."""
import os
import sqlite3
from pathlib import Path

import click
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from flask.cli import with_appcontext

from webapp import db
from webapp.vault import SECRET_COLUMNS, VaultError, vault, write_key_file

BATCH_SIZE = 50  # rows re-encrypted per transaction: the write lock is held for milliseconds, never the whole table


def reencrypt_all(batch_size: int = BATCH_SIZE) -> tuple[int, list[str]]:
    """Re-encrypt every stored secret under the newest key, a few rows per transaction.

    Returns (rows rewritten, "table #id" of rows no configured key can decrypt, left as they are).
    """
    rewritten, unreadable = 0, []
    with db.database.connection_context():
        for table, column in SECRET_COLUMNS:
            last_id = 0
            while True:
                with db.database.atomic("IMMEDIATE"):
                    rows = db.execute(
                        f'SELECT id, "{column}" FROM "{table}" WHERE id > ? AND "{column}" IS NOT NULL '
                        f"ORDER BY id LIMIT ?", (last_id, batch_size)).fetchall()
                    for row_id, token in rows:
                        try:
                            fresh = vault.rotate(token)
                        except VaultError:
                            unreadable.append(f"{table} #{row_id}")
                            continue
                        # Compare-and-set: a secret changed meanwhile by the app stays as the app wrote it.
                        cursor = db.execute(
                            f'UPDATE "{table}" SET "{column}" = ? WHERE id = ? AND "{column}" = ?',
                            (fresh, row_id, token))
                        rewritten += cursor.rowcount
                if not rows:
                    break
                last_id = rows[-1][0]
    return rewritten, unreadable


def not_under_newest_key() -> list[str]:
    """ "table #id" of every stored secret the newest key alone cannot decrypt."""
    newest = Fernet(vault.keys[0])
    stale = []
    with db.database.connection_context():
        for table, column in SECRET_COLUMNS:
            for row_id, token in db.database.execute_sql(
                    f'SELECT id, "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL ORDER BY id'):
                try:
                    newest.decrypt(token.encode("ascii"))
                except InvalidToken:
                    stale.append(f"{table} #{row_id}")
    return stale


def _key_file():
    return current_app.config.get("VAULT_KEY_FILE")


def _named_key_file():
    """The key file VAULT_KEYS_FILE names (SMTPDESK_VAULT_KEYS_FILE), one copy per host: only read by smtpdesk."""
    return current_app.config.get("VAULT_KEYS_FILE")


def _print_keys(keys: list[str]) -> None:
    """The key list to write into the named key file, or the variable to set."""
    if _named_key_file():
        click.echo(",".join(keys))
    else:
        click.echo(f"SMTPDESK_VAULT_KEYS={','.join(keys)}")


@click.group("vault", help="The key that encrypts credential secrets and connector passwords.")
def vault_group():
    pass


@vault_group.command("rotate-key")
@click.option("--retire-old", is_flag=True, help="Drop the old keys once every secret is under the new one.")
@click.option("--batch-size", type=int, default=BATCH_SIZE, show_default=True, help="Rows per transaction.")
@with_appcontext
def rotate_key(retire_old, batch_size):
    """Add a new vault key (newest first) and re-encrypt every secret under it while the app keeps running."""
    db.upgrade()
    keys = [Fernet.generate_key().decode(), *vault.keys]
    key_file = _key_file()
    if key_file is None and _named_key_file():
        # Every host has its own copy of the file, which this host may not even be able to write (a systemd
        # credential): say what to write everywhere, re-encrypt once every process reads it.
        click.echo(f"The vault keys come from the file {_named_key_file()}. Write this list (new key first) into that "
                   "file on every host, and restart every smtpdesk process (web and worker):")
        _print_keys(keys)
        click.echo("Then run `smtpdesk vault reencrypt --retire-old`, and write the single key it prints into the file "
                   "on every host. Keep a copy of the new key with your key backup.")
        return
    if key_file is None:
        # Variables of other processes cannot be changed from here: say what to set, re-encrypt later.
        click.echo("The vault keys come from SMTPDESK_VAULT_KEYS. Set this list (new key first) for every smtpdesk "
                   "process and restart them:")
        _print_keys(keys)
        click.echo("Then run `smtpdesk vault reencrypt --retire-old` with that list set, and set the single key it "
                   "prints. Keep a copy of the new key with your backups.")
        return
    write_key_file(key_file, keys)  # running processes reread it: the new key encrypts, the old ones still decrypt
    vault.init(keys, key_file)
    click.echo(f"Wrote a new vault key to {key_file} (new key first, {len(keys) - 1} older kept for reading).")
    _reencrypt(batch_size, retire_old)


@vault_group.command("reencrypt")
@click.option("--retire-old", is_flag=True, help="Drop the old keys once every secret is under the newest one.")
@click.option("--batch-size", type=int, default=BATCH_SIZE, show_default=True, help="Rows per transaction.")
@with_appcontext
def reencrypt(retire_old, batch_size):
    """Re-encrypt every secret under the newest configured key (the second step with SMTPDESK_VAULT_KEYS)."""
    db.upgrade()
    _reencrypt(batch_size, retire_old)


@vault_group.command("retire-old")
@with_appcontext
def retire_old_keys():
    """Keep only the newest vault key, once every stored secret is encrypted under it."""
    _retire()


def _reencrypt(batch_size: int, retire_old: bool) -> None:
    rewritten, unreadable = reencrypt_all(batch_size)
    click.echo(f"Re-encrypted {rewritten} secrets under the newest key.")
    if unreadable:
        raise click.ClickException(
            f"{len(unreadable)} secrets cannot be decrypted with any configured key ({', '.join(unreadable)}); "
            "they were left as they are and the old keys were kept. Enter those secrets again in the app.")
    if retire_old:
        _retire()
    elif len(vault.keys) > 1:
        click.echo("The old keys still decrypt, for processes that have not reread the keys yet. Once every process "
                   "uses the new key, run `smtpdesk vault retire-old`.")


def _retire() -> None:
    # A process that had not reread the key file may have just stored a secret under an old key: sweep again.
    reencrypt_all()
    stale = not_under_newest_key()
    if stale:
        raise click.ClickException(f"Not retiring the old keys: {', '.join(stale)} still need them. "
                                   "Run `smtpdesk vault reencrypt` first.")
    newest = vault.keys[:1]
    key_file = _key_file()
    if key_file is None and _named_key_file():
        click.echo(f"Every secret is under the newest key. Write this into {_named_key_file()} on every host, and "
                   "restart every smtpdesk process (the old keys are no longer needed):")
        _print_keys(newest)
        return
    if key_file is None:
        click.echo("Every secret is under the newest key. Set this (the old keys are no longer needed):")
        _print_keys(newest)
        return
    write_key_file(key_file, newest)
    vault.init(newest, key_file)
    click.echo(f"Old vault keys retired: {key_file} holds only the new key. Back it up now, separately from the "
               "database backups.")


# --- Backup ----------------------------------------------------------------------------------------------------


def backup_database(source: str, target: Path) -> None:
    """A consistent copy of the live database at target (SQLite's online backup API), owner-only (0600)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        os.chmod(temporary, 0o600)
        with sqlite3.connect(source, timeout=30) as live, sqlite3.connect(temporary) as copy:
            live.execute("PRAGMA busy_timeout = 30000")
            live.backup(copy, pages=256)  # in steps: writers wait only for one step at a time
            # One self-contained file: no -wal beside it to lose when it is copied around.
            copy.execute("PRAGMA journal_mode = DELETE")
            problem = copy.execute("PRAGMA quick_check").fetchone()[0]
        live.close()
        copy.close()
        if problem != "ok":
            raise click.ClickException(f"The copy failed its integrity check ({problem}); try again.")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@with_appcontext
def backup(path, force):
    """Copy the database to PATH while smtpdesk runs (the vault key is not in it: back it up separately)."""
    if current_app.config.get("DATABASE_URL"):
        raise click.ClickException("smtpdesk backup copies the SQLite file; this installation's database is "
                                   "PostgreSQL (SMTPDESK_DATABASE_URL): back it up with pg_dump. The vault key is not "
                                   "in the database either way: keep a copy of it apart.")
    source = current_app.config["DATABASE"]
    if not os.path.exists(source):
        raise click.ClickException(f"There is no database at {source} yet.")
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; give --force to replace it.")
    if path.resolve() == Path(source).resolve():
        raise click.UsageError("PATH is the live database itself.")
    backup_database(source, path)
    key_source = current_app.config.get("VAULT_KEYS_SOURCE") or "the vault key"
    click.echo(f"Backup of {source} written to {path} (mode 0600; it holds the audit log and encrypted secrets).")
    click.echo("To restore it: stop smtpdesk (serve and every worker); copy the backup over "
               f"{source} (delete {source}-wal and {source}-shm if they are there); start smtpdesk again.")
    click.echo(f"The vault key is NOT in this backup: keep a copy of {key_source} separately. Without it the "
               "secrets in the backup cannot be decrypted; kept apart, a stolen backup reveals no secret.")
