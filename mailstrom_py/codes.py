"""The enhanced mail system status codes the library records, by name.

Each name stands for one enhanced status code of RFC 3463 or of the IANA
registry RFC 5248 set up for later ones, in the class the library uses it in:
2 success, 4 transient, 5 permanent. Codes a server sends are recorded as the
server gave them (see :func:`mailstrom_py.retry.status_code_for`); these are the
ones the library chooses when no server reply decides. This module imports
nothing from the package, so every other module can import it.
"""

from __future__ import annotations

__all__ = [
    "AUTH_CREDENTIALS_INVALID",
    "BAD_CONNECTION",
    "BAD_DESTINATION_SYSTEM",
    "CONVERSION_NOT_SUPPORTED",
    "CRYPTOGRAPHIC_FAILURE",
    "DELIVERY_TIME_EXPIRED",
    "DESTINATION_HELD",
    "DIRECTORY_SERVER_FAILURE",
    "MESSAGE_TOO_BIG",
    "NON_ASCII_ADDRESSES_NOT_PERMITTED",
    "NO_ANSWER_FROM_HOST",
    "NULL_MX",
    "OTHER_PROTOCOL_PERMANENT",
    "OTHER_PROTOCOL_TRANSIENT",
    "OTHER_SECURITY_TRANSIENT",
    "OTHER_SYSTEM_PERMANENT",
    "OTHER_SYSTEM_TRANSIENT",
    "RECIPIENT_SUPPRESSED",
    "REQUIRETLS_NOT_SUPPORTED",
    "SECURITY_FEATURES_NOT_SUPPORTED",
    "TOO_MANY_RECIPIENTS",
    "UNABLE_TO_ROUTE",
    "UNDEFINED_PERMANENT",
    "UNDEFINED_SUCCESS",
    "UNDEFINED_TRANSIENT",
    "transient",
]

# X.0.0: "Other undefined Status", one per class.
UNDEFINED_SUCCESS = "2.0.0"
UNDEFINED_TRANSIENT = "4.0.0"
UNDEFINED_PERMANENT = "5.0.0"

# X.1: addressing.
#: "Bad destination system address": the domain is not a valid DNS name.
BAD_DESTINATION_SYSTEM = "5.1.2"
#: RFC 7505: the recipient's domain publishes a null MX, it takes no mail.
NULL_MX = "5.1.10"

# X.3: the mail system.
#: "Other or undefined mail system status"; transient.
OTHER_SYSTEM_TRANSIENT = "4.3.0"
#: "Other or undefined mail system status"; permanent: the queue's operator
#: failed the message (``mailstrom-py queue fail``).
OTHER_SYSTEM_PERMANENT = "5.3.0"
#: "Message too big for system": over the SIZE the server offers.
MESSAGE_TOO_BIG = "5.3.4"

# X.4: network and routing.
#: "No answer from host": no connection could be made.
NO_ANSWER_FROM_HOST = "4.4.1"
#: "Bad connection": connected, but the connection failed before the
#: transaction was done (no greeting, timed out, lost).
BAD_CONNECTION = "4.4.2"
#: "Directory server failure": DNS could not answer now.
DIRECTORY_SERVER_FAILURE = "4.4.3"
#: "Unable to route": no such domain, or no address for its exchangers.
UNABLE_TO_ROUTE = "5.4.4"
#: "Delivery time expired": the retry policy gave up.
DELIVERY_TIME_EXPIRED = "5.4.7"

#: "Mail system congestion": the library holds mail back from a destination
#: that is suspended or over its rate; no attempt was made (none is counted).
DESTINATION_HELD = "4.4.5"

# X.5: the mail delivery protocol.
#: "Other or undefined protocol status"; transient.
OTHER_PROTOCOL_TRANSIENT = "4.5.0"
#: "Other or undefined protocol status"; permanent: a reply outside 2xx-5xx.
OTHER_PROTOCOL_PERMANENT = "5.5.0"
#: "Too many recipients": the rest of them go in another transaction.
TOO_MANY_RECIPIENTS = "4.5.3"

# X.6: message content or media.
#: "Conversion required but not supported": 8-bit to a server without 8BITMIME.
CONVERSION_NOT_SUPPORTED = "5.6.3"
#: RFC 6531: "Non-ASCII addresses not permitted for that
#: sender/recipient": a server without SMTPUTF8.
NON_ASCII_ADDRESSES_NOT_PERMITTED = "5.6.7"

# X.7: security or policy.
#: "Other or undefined security status"; transient.
OTHER_SECURITY_TRANSIENT = "4.7.0"
#: "Security features not supported": TLS is required and not to be had.
SECURITY_FEATURES_NOT_SUPPORTED = "4.7.4"
#: "Cryptographic failure": the TLS handshake, or the certificate, failed.
CRYPTOGRAPHIC_FAILURE = "4.7.5"
#: RFC 4954 §6: "Authentication credentials invalid".
AUTH_CREDENTIALS_INVALID = "4.7.8"
#: "Delivery not authorized, message refused": the recipient is on the
#: suppression list, so the library refuses to send to it.
RECIPIENT_SUPPRESSED = "5.7.1"
#: RFC 8689 §5: "REQUIRETLS support required": a REQUIRETLS message cannot go
#: to this server.
REQUIRETLS_NOT_SUPPORTED = "5.7.30"


def transient(code: str) -> str:
    """Return ``code`` in class 4: the same condition, retried rather than final.

    Trouble reaching a server says nothing about its recipients, so even a
    permanent-looking code (a 5xx greeting, say) defers them.
    """
    return "4" + code[1:]
