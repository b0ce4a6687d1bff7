import os
import stat

import pytest
from peewee import IntegrityError

from tests.support.factories import make_account
from webapp import db
from webapp.db import database
from webapp.models import MODELS


def test_migrations_build_exactly_the_models_schema(app):
    for model in MODELS:
        table = model._meta.table_name
        columns = {c.name for c in database.get_columns(table)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, table
    assert db.schema_version() == len(db.migrations())


def test_upgrade_twice_changes_nothing(app):
    assert db.upgrade() == []


def test_database_is_in_wal_mode_with_foreign_keys(app):
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_database_and_key_files_are_owner_only(app, tmp_path):
    assert stat.S_IMODE(os.stat(app.config["DATABASE"]).st_mode) == 0o600


def test_the_database_refuses_a_second_default_account(app):
    make_account(is_default=True)
    with pytest.raises(IntegrityError), database.atomic():
        make_account(is_default=True)


def test_the_database_refuses_a_disabled_default_account(app):
    with pytest.raises(IntegrityError), database.atomic():
        make_account(is_default=True, enabled=False)
