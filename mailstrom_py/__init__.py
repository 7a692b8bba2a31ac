"""mailstrom_py: send email from synchronous code and know what became of it."""

from typing import TYPE_CHECKING

from .bounce import BounceCategory, classify
from .config import (
    Config,
    DestinationLimits,
    DirectConfig,
    DkimConfig,
    DsnPolicy,
    RelayConfig,
    ReplyRule,
    ShapingConfig,
    SuppressionPolicy,
    Timeouts,
    WebhookConfig,
)
from .config.loader import config_from_mapping, load_config
from .core import AsyncOutbox, Mailstrom, Outbox
from .errors import (
    ConfigError,
    DuplicateMessageError,
    InvalidMessageError,
    MailerClosedError,
    MailstromError,
    MessageNotFound,
    QueueFullError,
    StorageError,
    WebhookError,
    WorkerError,
)
from .event import Event, EventKind
from .message import PreparedEmail, prepare_email
from .message.compose import compose
from .message.dsn import build_dsn
from .retry import RetryPolicy
from .status import (
    DeliveryResult,
    MessageStatus,
    RecipientStatus,
    Remote,
    SmtpReply,
    SmtpStep,
)
from .storage import (
    Claim,
    MemoryStorage,
    QueueAdmin,
    QueueFilter,
    SqliteStorage,
    Storage,
)
from .storage.controls import Suppression, Suspension

if TYPE_CHECKING:
    from .storage.postgres import PostgresStorage

__version__ = "0.1.0"

__all__ = [
    "AsyncOutbox",
    "BounceCategory",
    "Claim",
    "Config",
    "ConfigError",
    "DeliveryResult",
    "DestinationLimits",
    "DirectConfig",
    "DkimConfig",
    "DsnPolicy",
    "DuplicateMessageError",
    "Event",
    "EventKind",
    "InvalidMessageError",
    "MailerClosedError",
    "Mailstrom",
    "MailstromError",
    "MemoryStorage",
    "MessageNotFound",
    "MessageStatus",
    "Outbox",
    "PostgresStorage",
    "PreparedEmail",
    "QueueAdmin",
    "QueueFilter",
    "QueueFullError",
    "RecipientStatus",
    "RelayConfig",
    "Remote",
    "ReplyRule",
    "RetryPolicy",
    "ShapingConfig",
    "SmtpReply",
    "SmtpStep",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "Suppression",
    "SuppressionPolicy",
    "Suspension",
    "Timeouts",
    "WebhookConfig",
    "WebhookError",
    "WorkerError",
    "__version__",
    "build_dsn",
    "classify",
    "compose",
    "config_from_mapping",
    "load_config",
    "prepare_email",
]


def __getattr__(name: str) -> object:
    # PostgresStorage needs psycopg, an optional dependency and a heavy import:
    # it is imported when first asked for.
    if name == "PostgresStorage":
        try:
            from .storage.postgres import PostgresStorage  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(
                f"PostgresStorage needs psycopg 3 and psycopg_pool ({exc}); install"
                " them with: pip install 'mailstrom_py[postgres]'"
            ) from exc
        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
