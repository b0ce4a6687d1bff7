"""Password hashing (argon2id) and the one-time code that creates the first admin."""
import hmac
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from webapp.models import User

hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hasher.hash("smtpdesk-no-such-user")

SETUP_CODE_FILE = "setup_code"


def hash_password(password: str) -> str:
    """The argon2id hash to store for a password."""
    return hasher.hash(password)


def authenticate(username: str, password: str) -> User | None:
    """The active user with this name and password, else None, in about the same time either way."""
    user = User.get_or_none(User.username == username.strip().lower())
    try:
        hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        user.save()
    return user


def setup_needed() -> bool:
    """True until the first user exists."""
    return not User.select(User.id).exists()


def issue_setup_code(instance_path: str) -> str | None:
    """Create (or reuse) the one-time setup code while no user exists; None once setup is done."""
    path = Path(instance_path) / SETUP_CODE_FILE
    if not setup_needed():
        path.unlink(missing_ok=True)
        return None
    if path.exists():
        return path.read_text().strip()
    code = "-".join(secrets.token_hex(3).upper() for _ in range(3))
    path.touch(mode=0o600)
    path.write_text(code + "\n")
    return code


def check_setup_code(instance_path: str, typed: str) -> bool:
    """Whether typed matches the printed setup code (constant-time comparison)."""
    path = Path(instance_path) / SETUP_CODE_FILE
    if not path.exists():
        return False
    expected = path.read_text().strip().upper()
    return hmac.compare_digest(expected.encode(), typed.strip().upper().encode())


def forget_setup_code(instance_path: str) -> None:
    """Delete the setup code once the first administrator exists."""
    (Path(instance_path) / SETUP_CODE_FILE).unlink(missing_ok=True)
