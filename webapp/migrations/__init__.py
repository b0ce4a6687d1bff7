"""Numbered schema migrations: mNNNN_name.py with upgrade(database), applied in order by `smtpdesk db upgrade`.

Migrations never import the models: they describe the schema as it was when written, using
playhouse.migrate for changes to existing tables, so an old database always reaches today's schema.

One set for both engines: statements are written for SQLite, and webapp.postgresql.schema() translates them for
PostgreSQL (types, booleans, the rowid every SQLite index ends with); where SQLite's SQL has no translation (its
triggers call Python), the migration gives PostgreSQL statements of its own with the same effect.
"""
