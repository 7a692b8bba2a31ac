"""Storage backends: where messages and their status live."""

from .admin import QueueAdmin, queue_admin
from .base import Claim, Storage
from .journal import EventJournal, JournalEntry
from .memory import MemoryStorage
from .query import QueueFilter
from .sqlite import SqliteStorage

__all__ = [
    "Claim",
    "EventJournal",
    "JournalEntry",
    "MemoryStorage",
    "QueueAdmin",
    "QueueFilter",
    "SqliteStorage",
    "Storage",
    "queue_admin",
]
