"""Free loopback ports, for the local servers the tooling, the tests and the benchmarks start.

A port found free may be taken by someone else before it is bound again; every caller binds it
at once and fails loudly otherwise, which is fine on a developer machine.
"""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_base(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free right now (a local
    control plane takes a block of ports from one base)."""
    for _ in range(50):
        # Below the kernel's ephemeral range (32768 up): there, client connections under load
        # (a benchmark, say) hold every other port, and a block is rarely free.
        base = random.randrange(20000, 32768 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free loopback ports found")
