"""``mailstrom-py send``: a ``sendmail`` that puts mail in the queue.

It reads one message from standard input (or ``--file``), stores it in the
queue of the configuration file for the worker to deliver, and exits: it never
talks SMTP itself. Installed as ``/usr/sbin/sendmail`` (invoked under that
name it behaves as ``send``), it takes mail from cron and other programs.

The options programs pass to sendmail work as there: ``-t`` (recipients from
To, Cc and Bcc, added to those given as arguments, as Postfix does), ``-f`` or
``-r`` (the envelope sender), ``-F`` (the full name for a From field that is
added), ``-i`` and ``-oi`` (a line holding a single dot does not end the
input), ``-bm`` (the default mode) and ``--``. ``--at TIME`` and ``--in
DURATION`` (not sendmail's) schedule the message: it is not attempted before
then, at most 60 days ahead. These are accepted and ignored:
every other ``-oX``, ``-O option=value``, ``-B type``, ``-N dsn``, ``-R ret``,
``-V envid``, ``-X file``, ``-L tag``, ``-h hops``, ``-A c|m``, ``-e x``, and
``-m``, ``-n``, ``-U``, ``-G``. ``-v`` prints the id of the queued message.

Exit status, from sysexits.h as sendmail's: 0 queued; 64 (EX_USAGE) bad
options (a time for ``--at``/``--in`` that cannot be used among them) or no
recipients; 65 (EX_DATAERR) the message or an address is
invalid, or its Message-ID is queued already; 66 (EX_NOINPUT) ``--file``
cannot be read; 70 (EX_SOFTWARE) an internal error; 74 (EX_IOERR) standard
input cannot be read; 75 (EX_TEMPFAIL) the queue cannot be opened or written,
or is full (``max_queued``), so nothing was stored; 78 (EX_CONFIG) the
configuration cannot be used.
"""

from __future__ import annotations

import dataclasses
import getopt
import getpass
import logging
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config.loader import load_config
from ..config.settings import LoadedConfig
from ..errors import (
    ConfigError,
    DuplicateMessageError,
    InvalidMessageError,
    QueueFullError,
    StorageError,
)
from ..message import prepare_email
from .common import config_path, open_outbox, require_shared_storage
from .logs import configure_logging
from .submission import addresses, complete, qualify, read_message
from .times import when

__all__ = ["USAGE", "SendOptions", "UsageError", "parse_options", "run_send"]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

_SHORT = "tivmnUGf:r:F:o:O:b:B:N:R:V:X:L:h:A:e:"
_LONG = ["config=", "file=", "help", "at=", "in="]
# Options sendmail takes that change nothing here (delivery mode, DSN and
# error-reporting settings, logging, 8BITMIME hints).
_IGNORED = frozenset(
    ("-O", "-B", "-N", "-R", "-V", "-X", "-L", "-h", "-A", "-e", "-m", "-n", "-U", "-G")
)

USAGE = """\
usage: mailstrom-py send [--config FILE] [--file FILE] [-t] [-i] [-f SENDER]
                         [-F NAME] [-v] [--at TIME | --in DURATION]
                         [--] [RECIPIENT ...]

Put one message, read from standard input, in the queue of the configuration
file (default: $MAILSTROM_CONFIG, else /etc/mailstrom/mailstrom.toml).

  -t           take recipients from To, Cc and Bcc as well (Bcc is removed)
  -i, -oi      a line holding a single dot does not end the message
  -f SENDER    the envelope sender (default: the Sender or From field)
  -F NAME      the full name in a From field added to a message without one
  -v           print the id of the queued message
  --file FILE  read the message from FILE instead of standard input
  --at TIME    send no sooner than this ISO 8601 time (2026-12-24T09:00 is
               local time; add an offset such as +01:00 or Z)
  --in DURATION  send no sooner than this long from now (90s, 15m, 2h, 1d)
  -oX, -O ...  other sendmail options, accepted and ignored
"""
_SYNOPSIS = USAGE.split("\n\n", 1)[0]


class UsageError(Exception):
    """The command line cannot be used (exit status 64)."""


@dataclass(frozen=True)
class SendOptions:
    """What the command line asked ``send`` to do."""

    config: str | None = None
    file: str | None = None
    extract: bool = False
    dot_ends: bool = True
    sender: str | None = None
    full_name: str = ""
    verbose: bool = False
    help: bool = False
    at: str | None = None
    after: str | None = None
    recipients: tuple[str, ...] = field(default=())


def parse_options(argv: Sequence[str]) -> SendOptions:
    """Read sendmail's options from ``argv``.

    Raises:
        UsageError: an unknown option, a missing value, or a mode other than
            ``-bm``.
    """
    try:
        pairs, rest = getopt.gnu_getopt(list(argv), _SHORT, _LONG)
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    found: dict[str, Any] = {"recipients": tuple(rest)}
    for option, value in pairs:
        found.update(_option(option, value))
    return SendOptions(**found)


def _option(option: str, value: str) -> dict[str, Any]:
    simple: dict[str, dict[str, Any]] = {
        "-t": {"extract": True},
        "-i": {"dot_ends": False},
        "-v": {"verbose": True},
        "--help": {"help": True},
        "--config": {"config": value},
        "--file": {"file": value},
        "--at": {"at": value},
        "--in": {"after": value},
        "-f": {"sender": value},
        "-r": {"sender": value},
        "-F": {"full_name": value},
    }
    if option in simple:
        return simple[option]
    if option == "-o":
        return {"dot_ends": False} if value == "i" else {}
    if option == "-b" and value != "m":
        raise UsageError(f"-b{value} is not supported; only -bm (deliver mail)")
    if option == "-b" or option in _IGNORED:
        return {}
    # getopt returns only options of _SHORT and _LONG: this is a slip here.
    raise UsageError(f"option {option} not handled")


def run_send(argv: Sequence[str], prog: str = "mailstrom-py send") -> int:
    """Run ``send`` with ``argv`` (the arguments after ``send``); return the
    exit status. Errors are written to standard error after ``prog:``."""
    try:
        return _send(argv)
    except _Failure as failure:
        print(f"{prog}: {failure.args[0]}", file=sys.stderr)
        return failure.status
    except Exception:  # noqa: BLE001 (sendmail's callers expect a status, 70)
        traceback.print_exc()
        return EX_SOFTWARE


class _Failure(Exception):
    """Ends ``send`` with ``status`` after printing the message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _send(argv: Sequence[str]) -> int:
    try:
        options = parse_options(argv)
    except UsageError as exc:
        raise _Failure(f"{exc}\n{_SYNOPSIS}", EX_USAGE) from None
    if options.help:
        sys.stdout.write(USAGE)
        return EX_OK
    try:
        send_at = when(options.at, options.after)
    except ValueError as exc:
        raise _Failure(str(exc), EX_USAGE) from None
    if not options.extract and not options.recipients:
        raise _Failure(
            "no recipients given (name them, or use -t to take them from the"
            " To, Cc and Bcc fields)",
            EX_USAGE,
        )
    loaded = _load(options.config)
    settings = loaded.logging
    if settings.levelno < logging.WARNING:  # a sendmail is quiet unless in trouble
        settings = dataclasses.replace(settings, level="WARNING")
    configure_logging(settings)
    domain = loaded.config.helo_name
    sender = _sender(options.sender, domain)
    author = sender or qualify(_login(), domain)
    message = complete(
        _read(options), domain=domain, sender=author, full_name=options.full_name
    )
    recipients = _recipients(options, message, loaded, sender)
    message_id = _store(loaded, message, sender, recipients, send_at)
    if options.verbose:
        later = "" if send_at is None else f", due {send_at.isoformat()}"
        print(f"queued as {message_id}{later}")
    return EX_OK


def _load(given: str | None) -> LoadedConfig:
    try:
        loaded = load_config(config_path(given))
        require_shared_storage(loaded)
    except ConfigError as exc:
        raise _Failure(str(exc), EX_CONFIG) from None
    return loaded


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "nobody"


def _sender(given: str | None, domain: str) -> str | None:
    if given is None:
        return None
    if given.strip() in ("", "<>"):
        raise _Failure("the null sender (-f '<>') is not supported", EX_USAGE)
    found = addresses(given)
    if len(found) != 1:
        raise _Failure(f"-f takes one address, not {given!r}", EX_USAGE)
    return qualify(found[0], domain)


def _read(options: SendOptions) -> bytes:
    if options.file is None:
        try:
            return read_message(sys.stdin.buffer, dot_ends=options.dot_ends)
        except OSError as exc:
            raise _Failure(f"cannot read standard input: {exc}", EX_IOERR) from None
    try:
        with open(options.file, "rb") as stream:
            return read_message(stream, dot_ends=False)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _Failure(f"{options.file}: {reason}", EX_NOINPUT) from None


def _recipients(
    options: SendOptions, message: bytes, loaded: LoadedConfig, sender: str | None
) -> list[str]:
    domain = loaded.config.helo_name
    given = [qualify(a, domain) for arg in options.recipients for a in addresses(arg)]
    if not options.extract:
        if not given:
            raise _Failure(f"no address in {options.recipients!r}", EX_USAGE)
        return given
    found = [*_header_recipients(message, domain, sender), *given]
    if not found:
        raise _Failure("no recipient addresses found in the message", EX_USAGE)
    return found


def _header_recipients(message: bytes, domain: str, sender: str | None) -> list[str]:
    """The recipients of To, Cc and Bcc, as the library reads them."""
    try:
        prepared = prepare_email(message, helo_name=domain, mail_from=sender)
    except InvalidMessageError as exc:
        if exc.field == "rcpt_to":
            return []  # no To, Cc or Bcc address
        raise _Failure(f"invalid message: {exc}", EX_DATAERR) from None
    return list(prepared.recipients)


def _store(
    loaded: LoadedConfig,
    message: bytes,
    sender: str | None,
    recipients: list[str],
    send_at: datetime | None,
) -> str:
    try:
        with open_outbox(loaded) as outbox:
            return outbox.send_email(
                message, mail_from=sender, rcpt_to=recipients, send_at=send_at
            )
    except InvalidMessageError as exc:
        raise _Failure(f"invalid message: {exc}", EX_DATAERR) from None
    except DuplicateMessageError as exc:
        raise _Failure(str(exc), EX_DATAERR) from None
    except ConfigError as exc:
        raise _Failure(str(exc), EX_CONFIG) from None
    except QueueFullError as exc:
        raise _Failure(f"{exc}; try again later", EX_TEMPFAIL) from None
    except StorageError as exc:
        raise _Failure(f"the message was not queued: {exc}", EX_TEMPFAIL) from None
