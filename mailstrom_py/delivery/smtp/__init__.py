"""SMTP sessions: connection setup, transactions, failures, and reuse.

:mod:`.client` is smtplib's client with a deadline for each whole step;
:mod:`.dial` connects and reads the greeting; :mod:`.link` sets a connection
up (EHLO, STARTTLS, AUTH) and runs commands under their deadlines;
:mod:`.session` sends messages over a link, one :mod:`.transaction` at a time,
each message's content held for the next pipelined write (:mod:`.pipeline`),
with an outcome for every recipient (:mod:`.outcomes`); :mod:`.envelope`
builds the MAIL command; :mod:`.failure` holds the exceptions and their
wording; :mod:`.pool` keeps idle sessions for the next message to the same
server.
"""

from __future__ import annotations

from .failure import SessionFailure, StaleSessionError
from .pool import SessionPool
from .session import SmtpSession

__all__ = ["SessionFailure", "SessionPool", "SmtpSession", "StaleSessionError"]
