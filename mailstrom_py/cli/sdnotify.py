"""Telling systemd how a ``Type=notify`` service is doing (``sd_notify``).

systemd passes the path of a Unix datagram socket in ``$NOTIFY_SOCKET`` (a
leading ``@`` names one in the abstract namespace); each datagram holds
newline-separated ``KEY=value`` assignments such as ``READY=1`` and
``STOPPING=1`` (see sd_notify(3)). Without the variable nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["NOTIFY_ENV", "notify"]

log = logging.getLogger(__name__)

#: The variable in which systemd passes the notification socket.
NOTIFY_ENV = "NOTIFY_SOCKET"


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"``...) to systemd.

    Args:
        state: the assignments, one per line.
        environ: where to read ``$NOTIFY_SOCKET``; ``os.environ`` by default.

    Returns:
        True when the datagram was sent; False when there is no socket to send
        to, or it cannot be reached (logged as a warning: the service manager
        would then not see the state, but delivery is unaffected).
    """
    env = os.environ if environ is None else environ
    address = env.get(NOTIFY_ENV, "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a kind of socket (vsock) not handled here
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("cannot notify the service manager (%s): %s", state, exc)
        return False
    return True
