"""The account form's backup account (Conta de contingência): the account whose relay carries this one's
notifications while its own fails (webapp/outbox/failover.py). Its field, choices and rules, mixed into AccountForm."""
from flask_babel import gettext as _, ngettext
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from webapp.models import SmtpAccount
from webapp.translation import lazy_gettext as _l


def _account_id(value):
    """A select's value as an account id: '' (or None) means none, a row (from obj=) its id, else an int id."""
    if value in (None, ""):
        return None
    return int(getattr(value, "id", value))


class BackupAccountFields:
    """AccountForm's backup account: backup_account (choices from backup_choices()) and its validation. Needs the
    form's `account` (None for a new one) and `name` field."""

    backup_account = SelectField(
        _l("Backup account"), coerce=_account_id, validate_choice=False,
        description=_l("Optional. When this account's server fails (connection refused or timed out, TLS, 421, a "
                       "login that worked before refused), its notifications go through this account for a while, "
                       "with that account's sender, Reply-To, Return-Path and footer."))

    def backup_choices(self) -> list:
        """No backup, then the enabled accounts other than this one; the saved backup stays listed (marked) when it
        is disabled since, so that saving says so instead of dropping it."""
        saved = self.account.backup_account_id if self.account is not None else None
        query = SmtpAccount.select(SmtpAccount.id, SmtpAccount.name, SmtpAccount.enabled).where(
            (SmtpAccount.enabled == True) | (SmtpAccount.id == saved))  # noqa: E712
        if self.account is not None:
            query = query.where(SmtpAccount.id != self.account.id)
        return [SelectChoice("", _("None"))] + [
            SelectChoice(a.id, a.name if a.enabled else _("%(name)s (disabled)", name=a.name))
            for a in query.order_by(SmtpAccount.name)]

    def validate_backup_account(self, field):
        """Enabled, not this account, and no circle back to it (A → B → A, A → B → C → A)."""
        if field.data is None:
            return
        backup = SmtpAccount.by_id(field.data)
        if backup is None:
            raise ValidationError(_("Choose an account from the list."))
        if self.account is not None and backup.id == self.account.id:
            raise ValidationError(_("An account cannot be its own backup."))
        if not backup.enabled:
            raise ValidationError(_("The backup account %(name)s is disabled: enable it, or choose another.",
                                    name=backup.name))
        names, seen, current = [backup.name], {backup.id}, backup
        while self.account is not None and current.backup_account_id is not None:
            if current.backup_account_id == self.account.id:
                this = self.name.data or self.account.name
                raise ValidationError(_("This would make a circle of backups: %(circle)s.",
                                        circle=" → ".join([this, *names, this])))
            if current.backup_account_id in seen:
                break  # a circle among the others, not through this account: not this form's to refuse
            current = SmtpAccount.get_by_id(current.backup_account_id)
            seen.add(current.id)
            names.append(current.name)


def quoted_names(accounts) -> str:
    """Accounts' names as a message lists them: “A”, “B”."""
    return ", ".join(f"“{account.name}”" for account in accounts)


def left_without_backup(backup: SmtpAccount, accounts: list) -> str:
    """What disabling backup does to the accounts naming it: the claim ignores a disabled backup."""
    return ngettext("The account %(names)s uses “%(name)s” as its backup: it has no backup while “%(name)s” is "
                    "disabled.",
                    "The accounts %(names)s use “%(name)s” as their backup: they have no backup while “%(name)s” is "
                    "disabled.", len(accounts), names=quoted_names(accounts), name=backup.name)
