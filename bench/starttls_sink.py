"""An aiosmtpd server that requires STARTTLS and discards every message: `python -m bench.starttls_sink PORT CERT KEY`.

Runs until SIGTERM. aiosmtpd itself is the ceiling here (its rate over one connection is reported beside P2's).
It advertises PIPELINING, as smtp-sink and most real servers do.
"""
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Discard:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads pipelined commands in order but does not say so; Postfix, Exim and the big providers
        # advertise PIPELINING (RFC 2920), and smtp-sink does too: so does this sink.
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        return "250 OK discarded"


def main() -> None:
    """Serve on 127.0.0.1:PORT until SIGTERM."""
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    controller = Controller(Discard(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    try:
        print("ready", flush=True)
        stop.wait(3600)  # bounded: the harness stops it long before
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
