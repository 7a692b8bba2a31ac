"""Preparing a message: from the caller's input to the exact bytes that are sent.

:func:`prepare_email` (in :mod:`.prepare`) parses, checks, completes the header,
encodes, serialises and verifies, with :mod:`.fastpath` beside it for input that
is already clean; :mod:`.address`, :mod:`.fields`, :mod:`.body` and
:mod:`.serialise` are the steps both ways share. :mod:`.dkim` signs,
:mod:`.tls_options` reads a message's own TLS requirements (RFC 8689) and
:mod:`.dsn` builds delivery status notifications.
"""

from __future__ import annotations

from .prepare import FOLD_AT, MAX_LINE, PreparedEmail, prepare_email, validate_address

__all__ = ["FOLD_AT", "MAX_LINE", "PreparedEmail", "prepare_email", "validate_address"]
