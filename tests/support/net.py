"""Loopback helpers for tests that start real servers: free ports and waiting for a listener."""
import random
import socket
import time

# Below Linux's ephemeral range (32768-60999), from which the kernel picks the local port of every outgoing
# connection and of every bind to port 0: a port handed out here and bound a moment later by a server (often in
# another process) cannot have been taken meanwhile by a client socket or a bind(0) of the other test process.
PORTS = range(20000, 32768)
_pick = random.Random()  # seeded from the OS per process, whatever a test does to the random module's own state


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the kernel's ephemeral range."""
    while True:
        port = _pick.choice(PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until host:port accepts a connection, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
