"""The credential vault's encryption: Fernet tokens under a key kept outside the database."""
from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class VaultError(Exception):
    """A secret could not be decrypted with the configured keys."""


class Vault:
    """Encrypts and decrypts secrets; bound to its keys at start-up like the deferred database."""

    def __init__(self):
        self._fernet = None

    def init(self, keys: str | list[str]) -> None:
        """Use these keys, newest first: the first encrypts, all of them decrypt."""
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        if not keys:
            raise VaultError("no vault key configured")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise VaultError("the vault key is not a valid Fernet key") from exc

    def encrypt(self, plaintext: str) -> str:
        """Return the ciphertext of a secret, as text safe to store."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Return the secret behind a ciphertext made by encrypt()."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise VaultError("a secret cannot be decrypted with the configured vault key") from exc


vault = Vault()
