"""The accounts report's pages as the report reads them, cheaply: a page served from the fragment cache
(webapp/fragments.py) builds neither SQL nor models (issue 6, P4: they were a third of the page's CPU)."""
from collections.abc import Sequence
from functools import cached_property

from peewee import SQL, fn

from webapp.accounts.forms import REPORT_COLUMNS, AccountFilterForm
from webapp.db import ShapedSql, contains_params, database, instances
from webapp.fragments import Plain
from webapp.models import SmtpAccount


class ReportQuery:
    """The filtered report as Page (webapp/web.py) reads it: count() and paginate(). Each shape of filter (which
    fields are filled, the order) has its SQL built once by peewee (ShapedSql), and a page's rows are fetched as
    plain values (ReportRows): a page served from the fragment cache builds neither SQL nor models."""

    def __init__(self, filters: AccountFilterForm):
        self._filters = filters
        terms, enabled = filters.terms(), filters.enabled_only()
        self._shape = (tuple(terms), enabled is not None, filters.sort_key)
        # In the order matching() adds them.
        self._params = [param for term in terms.values() for param in contains_params(term)]
        self._params += [] if enabled is None else [enabled]

    def count(self) -> int:
        sql = _REPORT_SQL(("count", self._shape), self._params,
                          lambda: self._filters.matching(SmtpAccount.select(fn.COUNT(SQL("*")))).order_by())
        return database.execute_sql(sql, self._params).fetchone()[0]

    def paginate(self, number: int, size: int) -> "ReportRows":
        params = [*self._params, size, (number - 1) * size]
        sql = _REPORT_SQL(("page", self._shape), params, lambda: self._filters.rows().paginate(number, size))
        return ReportRows(database.execute_sql(sql, params).fetchall())


_REPORT_SQL = ShapedSql()


class ReportRows(Sequence):
    """A page of report rows. key: the values they show (REPORT_COLUMNS and their last deliveries), all the fragment
    cache needs; the SmtpAccount models, last deliveries attached, are made when a row is read."""

    def __init__(self, rows: list[tuple]):
        self._rows = rows
        self._deliveries = SmtpAccount.last_delivery_rows([row[0] for row in rows])
        self.key = Plain((tuple(rows), tuple(self._deliveries)))

    @cached_property
    def _accounts(self) -> list[SmtpAccount]:
        accounts = instances(SmtpAccount, REPORT_COLUMNS, self._rows)
        return SmtpAccount.attach_last_delivery(accounts, self._deliveries)

    def __getitem__(self, index):
        return self._accounts[index]

    def __len__(self) -> int:
        return len(self._rows)
