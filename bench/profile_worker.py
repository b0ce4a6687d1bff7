"""P1 under a profiler: `python -m bench.profile_worker [COUNT]` enqueues COUNT notifications (default 20,000) of
bench.workload into a throwaway instance, then one Worker drains them to smtp-sink, and prints the rate.

The Worker runs in this process (as `smtpdesk worker --until-idle` runs it, without the command's start-up), so that a
profiler started with it sees the drain: run it under py-spy (`make profile-worker` writes
build/bench/worker-profile.svg) or pyinstrument; the enqueue is done before "draining" is printed.
"""
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.delivery import ACCOUNT, obtain_smtp_sink, start_sink
from bench.workload import Workload


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
        from webapp.outbox import OutboxSettings, Worker, connection, send_notification

        app = create_app()
        logging.basicConfig(level=logging.INFO, force=True, filename=str(work / "worker.log"))
        workload = Workload("delivery")
        with app.app_context():
            db.upgrade()
            with connection():
                SmtpAccount.create(**ACCOUNT, host="127.0.0.1", port=port)
                for _ in range(count):
                    send_notification(**workload.notification())
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
