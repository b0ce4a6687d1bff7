"""Numbered schema migrations: mNNNN_name.py with upgrade(database), applied in order by `smtpdesk db upgrade`.

Migrations never import the models: they describe the schema as it was when written, using
playhouse.migrate for changes to existing tables, so an old database always reaches today's schema.
"""
