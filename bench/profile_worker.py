"""P1 under a profiler: `python -m bench.profile_worker [COUNT] [--realistic]` enqueues COUNT notifications (default
20,000) into a throwaway instance, then one Worker drains them to smtp-sink, and prints the rate.

--realistic sends each notification to 1-3 recipients of its own, some with accented display names, with a pt-BR
subject and about 1 KB of pt-BR text: values that differ from one message to the next, as real notifications do
(without it, every notification goes to one recipient with an ASCII subject and body).

For where the time goes, run it under py-spy (`make profile-worker` writes build/bench/worker-profile.svg) or
pyinstrument; the enqueue is done before "draining" is printed, so a profiler attached from then on sees the
worker alone.
"""
import logging
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import ADDRESSES, BODY, obtain_smtp_sink, start_sink

NAMES = ["Ana Luíza Souza", "João Gonçalves", "Conceição Araújo", "Márcio Simões", "Inês Magalhães", "Pedro Silva"]
SUBJECT = "Relatório diário de operações nº {n}: atenção à manutenção programada"
PT_BODY = ("Prezado(a), informamos que a rotina de sincronização das contas foi concluída às 03h15, porém algumas "
           "operações não puderam ser executadas devido a limitações de acesso. A equipe já está ciente e avaliará a "
           "situação na próxima janela de manutenção. ") * 5


def notification(n: int, realistic: bool, rng: random.Random) -> dict:
    """send_notification()'s arguments for the n-th notification."""
    if not realistic:
        return dict(to="user@example.com", subject=f"Bench {n}", text=BODY)
    to = []
    for k in range(rng.randint(1, 3)):
        address = f"pessoa{n}.{k}@exemplo.com.br"
        to.append(f"{rng.choice(NAMES)} <{address}>" if rng.random() < 0.6 else address)
    return dict(to=to, subject=SUBJECT.format(n=n), text=PT_BODY[:1000])


def main() -> None:
    """Start smtp-sink, enqueue, drain, stop."""
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    realistic = "--realistic" in sys.argv[1:]
    count = int(args[0]) if args else 20000
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
        rng = random.Random(42)
        with app.app_context():
            db.upgrade()
            with db.database.connection_context():
                account = SmtpAccount.create(name="sink", **ADDRESSES, host="127.0.0.1", port=port, is_default=True)
                for n in range(count):
                    send_notification(**notification(n, realistic, rng), account=account)
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
