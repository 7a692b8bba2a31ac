"""The storage contract, run against every backend the library ships.

The suite is :class:`mailstrom_py.testing.contract.StorageContract`. The
``defaults`` backend implements only the abstract methods, so the suite checks
the base classes' own implementations (``add``, ``record``, ``count``) as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mailstrom_py
from mailstrom_py import MemoryStorage, SqliteStorage, Storage
from mailstrom_py.storage.tls_tally import MemoryTlsTally
from mailstrom_py.testing import AbstractOnly
from mailstrom_py.testing.contract import StorageContract
from mailstrom_py.testing.contract.tls_tally import TlsTallyContract


class TestDefaults(StorageContract):
    """The base classes' methods over the abstract ones (MemoryStorage's)."""

    def make_storage(self, directory: Path) -> Storage:
        return AbstractOnly()


class TestMemory(StorageContract):
    """MemoryStorage."""

    def make_storage(self, directory: Path) -> Storage:
        return MemoryStorage()


class TestSqlite(StorageContract):
    """SqliteStorage as configured by default."""

    def make_storage(self, directory: Path) -> Storage:
        return SqliteStorage(directory / "outbox.db")


class TestSqliteAllFull(StorageContract):
    """SqliteStorage with the attempts' bookkeeping synced as fully as messages."""

    def make_storage(self, directory: Path) -> Storage:
        return SqliteStorage(directory / "outbox.db", attempt_synchronous="FULL")


class TestPostgres(StorageContract):
    """PostgresStorage on a real server, in a fresh database per test, keeping the
    times the tests give (``clock="caller"``) rather than the server's."""

    @pytest.fixture(autouse=True)
    def database(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn

    def make_storage(self, directory: Path) -> Storage:
        # Looked up when used: psycopg is optional, the other backends run without.
        return mailstrom_py.PostgresStorage(self.dsn, clock="caller")


class TestMemoryTlsTally(TlsTallyContract):
    """MemoryTlsTally, the TLS report counts a reporter keeps in memory for a
    storage that keeps none, holds to the same contract."""

    @pytest.fixture
    def storage(self) -> MemoryTlsTally:
        return MemoryTlsTally()
