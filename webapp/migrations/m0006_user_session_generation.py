"""A per-user session generation: signing out adds one, so a session cookie copied before no longer signs in."""


def upgrade(database):
    # A NOT NULL column with a default is added in place; playhouse.migrate would rebuild the user table for it,
    # and dropping the old table fires its ON DELETE SET NULL foreign keys (audit actors, token owners).
    database.execute_sql('ALTER TABLE "user" ADD COLUMN "session_generation" INTEGER NOT NULL DEFAULT 0')
