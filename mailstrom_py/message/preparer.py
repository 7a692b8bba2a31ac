"""The Preparer: from the caller's message to the exact bytes that are sent.

Preparation is pure: it never changes the caller's object, does no I/O, and either
returns a complete :class:`PreparedEmail` or raises
:class:`~mailstrom_py.errors.InvalidMessageError`. Everything that protects the SMTP
conversation is checked here, once, before the message is stored: strict addresses,
header injection (CVE-2024-6923 encoded newlines included), and a body of CRLF lines
of at most 998 octets with no bare CR or LF (SMTP smuggling).

A message takes one of two paths, chosen in :meth:`Preparer.prepare`: clean bytes or
str the fast path (:mod:`.fastpath`), everything else, and whatever the fast path
is unsure of, the full path (:mod:`.fullpath`). Both parse, check, complete the
header, encode, serialise and verify, with exactly the same result. Then the
message's own TLS requirements are read (:mod:`.tls_options`) and it is signed
(:mod:`.dkim`), over the bytes every attempt will send.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import Message
from typing import TYPE_CHECKING

from ..errors import ConfigError, InvalidMessageError
from .completion import MessageIds, given_message_id
from .dkim import DkimSigner
from .envelope import read_address_header
from .fastpath import prepare_fast
from .fullpath import prepare_full
from .parsing import CachingHeaderRegistry
from .prepared import PreparedEmail
from .tls_options import with_tls_options

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Preparer", "prepare_email"]

# The messages that may take the fast path; one union, rather than one made at
# each isinstance() call.
_RAW = bytes | bytearray | str


class Preparer:
    """Turns messages into :class:`PreparedEmail` values under one mailer's policy.

    The one way in for every message a mailer sends: those given to
    ``send_email()`` and the delivery reports it writes itself. Thread-safe: it
    keeps no state between messages.

    Args:
        helo_name: the client's host name; the right half of a generated
            Message-ID.
        allow_8bit: keep 8-bit text parts 8-bit (the server must offer 8BITMIME).
        signer: signs every prepared message; by default none is signed.
        clock: wall-clock seconds since the epoch, for a missing Date header;
            ``time.time`` by default.
        message_ids: makes the Message-ID of a message without one; by default
            ``MessageIds(helo_name)``.
        default_from: the From header of a message that has none (one
            mailbox); the envelope sender is then read from it, unless given.
            This is the one place a default sender is applied.

    Raises:
        ConfigError: *default_from* is not one mailbox (field ``default_from``).
    """

    def __init__(
        self,
        helo_name: str,
        *,
        allow_8bit: bool = False,
        signer: DkimSigner | None = None,
        clock: Callable[[], float] | None = None,
        message_ids: MessageIds | None = None,
        default_from: str | None = None,
    ) -> None:
        self._helo_name = helo_name
        self._allow_8bit = allow_8bit
        self._signer = signer
        self._clock = clock
        self._ids = message_ids if message_ids is not None else MessageIds(helo_name)
        if default_from is not None:
            _check_default_from(default_from)
        self._default_from = default_from

    @classmethod
    def from_config(
        cls, config: Config, *, clock: Callable[[], float] | None = None
    ) -> Preparer:
        """Return the preparer of a mailer with ``config``: its HELO name, 8-bit
        policy, DKIM keys and default sender.

        Raises:
            ConfigError: the DKIM signer cannot be built from ``config``, or its
                ``default_from`` is not one mailbox.
        """
        signer = DkimSigner(config.dkim_keys) if config.dkim_keys else None
        return cls(
            config.helo_name,
            allow_8bit=config.allow_8bit,
            signer=signer,
            clock=clock,
            default_from=config.default_from,
        )

    @property
    def helo_name(self) -> str:
        """The host name the preparer writes into Message-IDs."""
        return self._helo_name

    def prepare(
        self,
        message: Message | bytes | bytearray | str,
        *,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | None = None,
        require_tls: bool = False,
        allow_null_sender: bool = False,
        now: datetime | None = None,
        message_id: str | None = None,
    ) -> PreparedEmail:
        """Check a message and turn it into the envelope and bytes to send.

        See :func:`prepare_email` for what is checked and changed; a message
        without a From header gets the preparer's ``default_from``. Then the
        message's TLS requirements are recorded (RFC 8689: ``require_tls`` asks
        for REQUIRETLS, a ``TLS-Required: No`` header relaxes the mailer's own
        TLS policy) and it is DKIM-signed.

        Args:
            message: an :class:`email.message.EmailMessage` (copied, never
                changed), a compat32 :class:`email.message.Message`, or the
                message as bytes or str.
            mail_from: the envelope sender, overriding the headers.
            rcpt_to: the envelope recipients, overriding To, Cc and Bcc.
            require_tls: ask for RFC 8689 REQUIRETLS.
            allow_null_sender: accept ``""`` or ``"<>"`` as *mail_from* (bounces
                only).
            now: the time for a missing Date header; by default the clock's.
            message_id: ``id-left@id-right`` to use when the message has no
                Message-ID.

        Raises:
            InvalidMessageError: the message or an envelope argument is unusable
                (``field`` names the header or argument at fault), its
                ``TLS-Required`` header says anything but ``No``, or it cannot be
                DKIM-signed.
            TypeError: *message* is not a message, bytes or str.
        """
        given: object = rcpt_to
        if given is not None and isinstance(given, Iterator):
            rcpt_to = tuple(given)  # read once, though both paths may read it
        factory = CachingHeaderRegistry()
        if now is None:
            clock = self._clock
            now = (
                datetime.now(UTC)
                if clock is None
                else datetime.fromtimestamp(clock(), UTC)
            )
        new_message_id = (
            self._ids.new
            if message_id is None
            else functools.partial(given_message_id, message_id)
        )
        email = None
        if isinstance(message, _RAW):
            email = prepare_fast(
                message,
                factory,
                mail_from=mail_from,
                rcpt_to=rcpt_to,
                allow_null_sender=allow_null_sender,
                now=now,
                new_message_id=new_message_id,
                default_from=self._default_from,
            )
        if email is None:
            email = prepare_full(
                message,
                factory,
                allow_8bit=self._allow_8bit,
                mail_from=mail_from,
                rcpt_to=rcpt_to,
                allow_null_sender=allow_null_sender,
                now=now,
                new_message_id=new_message_id,
                default_from=self._default_from,
            )
        email = with_tls_options(email, require_tls=require_tls)
        return email if self._signer is None else self._signer.sign(email)


def prepare_email(
    message: Message | bytes | bytearray | str,
    *,
    helo_name: str,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] | None = None,
    allow_8bit: bool = False,
    allow_null_sender: bool = False,
    now: datetime | None = None,
    message_id: str | None = None,
) -> PreparedEmail:
    """Check a message and turn it into the envelope and bytes to send.

    The envelope sender is *mail_from*, else the Sender header's mailbox, else the
    From header's single mailbox. The recipients are *rcpt_to*, else every address
    of To, Cc and Bcc, de-duplicated (domains compared case-insensitively). Headers
    the envelope is read from must parse cleanly, once each; with the envelope
    given, they go as written whatever they hold. Bcc is removed from the bytes;
    Date and Message-ID are added when missing; a leading mbox ``From`` line is
    dropped. Body lines end in CRLF; a part with 8-bit data (unless *allow_8bit*),
    a NUL or a line over 998 octets is re-encoded as quoted-printable (text) or
    base64 (anything else). Given as bytes or str, a message whose header section
    ends its lines in a bare CR, or in LF alone beside CRLF, is refused; one
    written with LF alone throughout goes out in CRLF. A ``TLS-Required: No``
    header (RFC 8689) is recorded as ``tls_optional``; nothing is signed.

    The same as ``Preparer(helo_name, allow_8bit=allow_8bit).prepare(...)``; the
    preparer is made once for each HELO name.

    Args:
        message: an :class:`email.message.EmailMessage` (copied, never changed), a
            compat32 :class:`email.message.Message`, or the message as bytes or str.
        helo_name: the client's host name; the right half of a generated Message-ID.
        mail_from: the envelope sender, overriding the headers.
        rcpt_to: the envelope recipients, overriding To, Cc and Bcc.
        allow_8bit: keep 8-bit text parts 8-bit (the server must offer 8BITMIME).
        allow_null_sender: accept ``""`` or ``"<>"`` as *mail_from* (bounces only).
        now: the time for a missing Date header; defaults to the current UTC time.
        message_id: ``id-left@id-right`` to use when the message has no Message-ID.

    Returns:
        The prepared message.

    Raises:
        InvalidMessageError: the message or an envelope argument is unusable, or its
            ``TLS-Required`` header says anything but ``No``; ``field`` names the
            header or argument at fault.
        TypeError: *message* is not a message, bytes or str.
    """
    return _default_preparer(helo_name, allow_8bit).prepare(
        message,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        allow_null_sender=allow_null_sender,
        now=now,
        message_id=message_id,
    )


def _check_default_from(default_from: str) -> None:
    """Refuse a default sender that is not one mailbox a From header can hold."""
    factory = CachingHeaderRegistry()
    try:
        listed = read_address_header("From", default_from, factory)
    except InvalidMessageError as exc:
        raise ConfigError(exc.reason, "default_from") from None
    if len(listed.addresses) != 1 or listed.has_group:
        raise ConfigError(f"must be one mailbox, not {default_from!r}", "default_from")


@functools.lru_cache(maxsize=16)
def _default_preparer(helo_name: str, allow_8bit: bool) -> Preparer:
    # A preparer with the default clock and Message-IDs keeps nothing between
    # messages, so one serves every call; making it is a tenth of the fast path.
    return Preparer(helo_name, allow_8bit=allow_8bit)
