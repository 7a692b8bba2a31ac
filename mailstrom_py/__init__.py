"""mailstrom_py: send email from synchronous code and know what became of it."""

from .config import Config, DirectConfig, DkimConfig, DsnPolicy, RelayConfig, Timeouts
from .config.loader import config_from_mapping, load_config
from .core import Mailstrom
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
from .message.dsn import build_dsn
from .retry import RetryPolicy
from .status import DeliveryResult, MessageStatus, RecipientStatus, Remote, SmtpReply
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
    "PreparedEmail",
    "QueueAdmin",
    "QueueFilter",
    "RecipientStatus",
    "RelayConfig",
    "Remote",
    "RetryPolicy",
    "SmtpReply",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "Timeouts",
    "WorkerError",
    "__version__",
    "build_dsn",
    "config_from_mapping",
    "load_config",
    "prepare_email",
]
