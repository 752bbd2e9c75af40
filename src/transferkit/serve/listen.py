"""The listening socket of `serve` and of the pages, bound before anything says where it serves.

    sock = listen("127.0.0.1", 8000)        # ConfigError: port in use, a host this machine is not, a port < 1024
    uvicorn.Server(config).run(sockets=[sock])

Handed its socket, uvicorn binds nothing itself: a port that is taken is a message saying what to give instead
(exit code 2), not uvicorn's `[Errno 98]` log line after "Serving on ..." and exit code 3.
"""

from __future__ import annotations

import errno
import socket


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one the system picks; `getsockname()` says which)."""
    from ..errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(
            f"--host {host!r} is not an address or a name this machine can resolve ({e}): give 127.0.0.1 (this "
            "machine only) or 0.0.0.0 (every network interface)."
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            why = f"--port {port} on {host} is in use by another program: give another --port (0: any free one)."
        elif e.errno == errno.EADDRNOTAVAIL:
            why = f"--host {host} is not an address of this machine: give 127.0.0.1 or 0.0.0.0 (every interface)."
        elif e.errno == errno.EACCES:
            why = f"--port {port}: ports under 1024 need administrator rights here; give one from 1024 up."
        else:
            why = f"Cannot listen on {host}:{port} ({e.strerror or e}): give another --host or --port."
        raise ConfigError(why) from None
    return sock
