"""SMTP sessions: connection setup, transactions, failures, and reuse.

:mod:`.client` is smtplib's client with a deadline for each whole step;
:mod:`.link` sets a connection up (greeting, EHLO, STARTTLS, AUTH) and runs
commands under their deadlines; :mod:`.session` runs pipelined transactions with
a result for every recipient; :mod:`.envelope` builds the MAIL command;
:mod:`.failure` holds the exceptions and their wording; :mod:`.pool` keeps idle
sessions for the next message to the same server.
"""

from __future__ import annotations

from .failure import SessionFailure, StaleSessionError
from .pool import SessionPool
from .session import SmtpSession

__all__ = ["SessionFailure", "SessionPool", "SmtpSession", "StaleSessionError"]
