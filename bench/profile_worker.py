"""P1 under a profiler: `python -m bench.profile_worker [COUNT]` enqueues COUNT notifications (default 20,000) into a
throwaway instance, then one Worker drains them to smtp-sink, and prints the rate.

For where the time goes, run it under py-spy (`make profile-worker` writes build/bench/worker-profile.svg) or
pyinstrument; the enqueue is done before "draining" is printed, so a profiler attached from then on sees the
worker alone.
"""
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import ADDRESSES, BODY, obtain_smtp_sink, start_sink


def main() -> None:
    """Start smtp-sink, enqueue, drain, stop."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    obtain_smtp_sink()
    with tempfile.TemporaryDirectory(prefix="smtpdesk-profile-") as folder, ExitStack() as stack:
        work = Path(folder)
        port = start_sink(stack, work)
        os.environ["SMTPDESK_INSTANCE_PATH"] = str(work / "instance")
        from webapp import create_app, db
        from webapp.models import SmtpAccount
        from webapp.outbox import OutboxSettings, Worker, send_notification

        app = create_app()
        logging.basicConfig(level=logging.INFO, force=True, filename=str(work / "worker.log"))
        with app.app_context():
            db.upgrade()
            with db.database.connection_context():
                account = SmtpAccount.create(name="sink", **ADDRESSES, host="127.0.0.1", port=port, is_default=True)
                for n in range(count):
                    send_notification(to="user@example.com", subject=f"Bench {n}", text=BODY, account=account)
            print(f"draining {count:,} notifications", flush=True)
            worker = Worker(OutboxSettings.from_config(app.config))
            began = time.perf_counter()
            try:
                worker.run_until_idle(timeout=1800)
            finally:
                worker.close()
            print(f"{count / (time.perf_counter() - began):,.0f} msg/s")


if __name__ == "__main__":
    main()
