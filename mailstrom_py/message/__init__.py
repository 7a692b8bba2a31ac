"""Preparing a message: from the caller's input to the exact bytes that are sent.

One :class:`Preparer` (in :mod:`.preparer`) owns the way: parse -> check ->
complete headers -> encode -> serialise -> verify -> sign. Clean bytes or str take
:mod:`.fastpath`, everything else :mod:`.fullpath`, with identical results; the
steps live in :mod:`.parsing`, :mod:`.header_checks`, :mod:`.envelope` (with
:mod:`.address`), :mod:`.completion`, :mod:`.body`, :mod:`.serialise` (with
:mod:`.verbatim`), :mod:`.tls_options` (RFC 8689) and :mod:`.dkim`.
:mod:`.headers` holds the header-section rules both paths share; :mod:`.dsn`
builds delivery status notifications.
"""

from __future__ import annotations

from .address import validate_address
from .headers import FOLD_AT, MAX_LINE
from .prepared import PreparedEmail
from .preparer import Preparer, prepare_email

__all__ = [
    "FOLD_AT",
    "MAX_LINE",
    "PreparedEmail",
    "Preparer",
    "prepare_email",
    "validate_address",
]
