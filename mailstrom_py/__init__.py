"""mailstrom_py: send email from synchronous code and know what became of it."""

from .config import Config, DirectConfig, DkimConfig, DsnPolicy, RelayConfig, Timeouts
from .config.loader import config_from_mapping, load_config
from .core import AsyncOutbox, Mailstrom, Outbox
from .errors import (
    ConfigError,
    DuplicateMessageError,
    InvalidMessageError,
    MailerClosedError,
    MailstromError,
    MessageNotFound,
    StorageError,
    WorkerError,
)
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

__version__ = "0.1.0"

__all__ = [
    "AsyncOutbox",
    "Claim",
    "Config",
    "ConfigError",
    "DeliveryResult",
    "DirectConfig",
    "DkimConfig",
    "DsnPolicy",
    "DuplicateMessageError",
    "InvalidMessageError",
    "MailerClosedError",
    "Mailstrom",
    "MailstromError",
    "MemoryStorage",
    "MessageNotFound",
    "MessageStatus",
    "Outbox",
    "PreparedEmail",
    "QueueAdmin",
    "QueueFilter",
    "RecipientStatus",
    "RelayConfig",
    "Remote",
    "RetryPolicy",
    "SmtpReply",
    "SmtpStep",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "Timeouts",
    "WorkerError",
    "__version__",
    "build_dsn",
    "compose",
    "config_from_mapping",
    "load_config",
    "prepare_email",
]
