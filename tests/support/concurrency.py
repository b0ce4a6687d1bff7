"""Running several things at the same moment, in threads."""
import threading

from webapp.db import database


def close_connection() -> None:
    """Close this thread's database connection, if it opened one (a request served here keeps it): a thread that
    ends leaves it to the garbage collector, and psycopg warns about a connection it finds open."""
    if not database.is_closed():
        database.close()


def run_together(*targets):
    """Start every target at the same moment in its own thread; re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def run(target):
        try:
            barrier.wait(timeout=30)
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
        finally:
            close_connection()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
