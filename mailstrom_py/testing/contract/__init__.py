"""The storage contract suite: every backend must pass these tests unchanged.

To check a backend, subclass :class:`StorageContract` in a test module and
return a new, empty backend from :meth:`~StorageContract.make_storage`::

    from mailstrom_py.testing.contract import StorageContract

    class TestMyStorage(StorageContract):
        def make_storage(self, directory):
            return MyStorage(directory / "outbox.db")

pytest then runs every test of the contract against it. The tests come in groups,
one class each (:mod:`.add`, :mod:`.claims`, :mod:`.remote`, :mod:`.leases`,
:mod:`.admin`, :mod:`.schedule`, :mod:`.fail`, :mod:`.journal`,
:mod:`.controls`, :mod:`.policies`, :mod:`.tls_tally`), should a backend want
to run some of them only. This module needs pytest; importing :mod:`mailstrom_py` or
:mod:`mailstrom_py.testing` does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from ...storage import Storage, queue_admin

# Registered before the tests are imported, so that pytest rewrites their asserts
# (a failing one then shows the values compared), as it does in test modules.
pytest.register_assert_rewrite(f"{__name__}.add", f"{__name__}.claims")
pytest.register_assert_rewrite(f"{__name__}.admin", f"{__name__}.common")
pytest.register_assert_rewrite(f"{__name__}.schedule", f"{__name__}.fail")
pytest.register_assert_rewrite(f"{__name__}.journal")
pytest.register_assert_rewrite(f"{__name__}.controls")
pytest.register_assert_rewrite(f"{__name__}.leases")
pytest.register_assert_rewrite(f"{__name__}.remote")
pytest.register_assert_rewrite(f"{__name__}.policies")
pytest.register_assert_rewrite(f"{__name__}.tls_tally")

from .add import AddContract, AddManyContract, ConcurrencyContract  # noqa: E402
from .admin import (  # noqa: E402
    DropContract,
    FindContract,
    HoldAndReleaseContract,
    KickContract,
    RecentContract,
)
from .claims import ClaimDueContract, NextDueContract, RecordContract  # noqa: E402
from .common import Backend  # noqa: E402
from .controls import SuppressionContract, SuspensionContract  # noqa: E402
from .fail import FailContract  # noqa: E402
from .journal import JournalContract  # noqa: E402
from .leases import ExtendContract  # noqa: E402
from .policies import PolicyCacheContract  # noqa: E402
from .remote import RemoteContract  # noqa: E402
from .schedule import ScheduleContract, ScheduledAddContract  # noqa: E402
from .tls_tally import TlsTallyContract  # noqa: E402

__all__ = ["StorageContract"]


class StorageContract(
    AddContract,
    AddManyContract,
    ClaimDueContract,
    NextDueContract,
    RecordContract,
    RemoteContract,
    ExtendContract,
    ConcurrencyContract,
    FindContract,
    KickContract,
    HoldAndReleaseContract,
    DropContract,
    RecentContract,
    ScheduledAddContract,
    ScheduleContract,
    FailContract,
    JournalContract,
    SuppressionContract,
    SuspensionContract,
    PolicyCacheContract,
    TlsTallyContract,
):
    """The whole storage contract, for a backend that :meth:`make_storage` builds.

    Each test gets a backend of its own, closed after the test.
    """

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Backend]:
        """A new backend from :meth:`make_storage`, closed after the test."""
        backend = self.make_storage(tmp_path)
        try:
            queue_admin(backend)
            yield cast(Backend, backend)
        finally:
            backend.close()

    def make_storage(self, directory: Path) -> Storage:
        """Return a new, empty backend: a :class:`~mailstrom_py.Storage` that is a
        :class:`~mailstrom_py.storage.QueueAdmin` and a
        :class:`~mailstrom_py.storage.controls.Controls` too.

        Args:
            directory: an empty directory of the test's own, for any files the
                backend keeps.
        """
        raise NotImplementedError(f"{type(self).__name__} must define make_storage()")
