"""Storage backends: where messages and their status live."""

from .base import Claim, Storage
from .memory import MemoryStorage
from .query import QueueFilter
from .sqlite import SqliteStorage

__all__ = ["Claim", "MemoryStorage", "QueueFilter", "SqliteStorage", "Storage"]
