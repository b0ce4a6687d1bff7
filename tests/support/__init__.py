"""Helpers the tests share: factories, signed-in clients, processes, loopback networking."""
