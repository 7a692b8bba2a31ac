"""The contract of the delivery controls: the suppression list and the suspended
destinations (:class:`~mailstrom_py.storage.controls.Controls`)."""

from __future__ import annotations

from ...storage.controls import Suppression, Suspension
from .common import Backend

__all__ = ["SuppressionContract", "SuspensionContract"]

DAY = 86400.0


def entry(
    address: str, since: float = 1000.0, until: float = 1000.0 + DAY
) -> Suppression:
    """A suppression of ``address`` after a 5.1.1."""
    return Suppression(address, "550 5.1.1 no such user", since, until)


class SuppressionContract:
    """suppress, unsuppress, suppressed and suppressions."""

    def test_an_address_is_suppressed_until_its_entry_ends(
        self, storage: Backend
    ) -> None:
        """A suppressed address is found while its entry is in force, and
        neither before ``until`` is reached nor after."""
        storage.suppress([entry("gone@example.test")])
        assert storage.suppressed(["gone@example.test"], 2000.0) == {
            "gone@example.test": entry("gone@example.test")
        }
        assert storage.suppressed(["gone@example.test"], 1000.0 + DAY) == {}
        assert storage.suppressions(1000.0 + DAY) == []

    def test_lookups_fold_case_and_key_by_the_address_given(
        self, storage: Backend
    ) -> None:
        """An address is found whatever its case, keyed as the caller wrote it;
        addresses not on the list are left out."""
        storage.suppress([entry("gone@example.test")])
        found = storage.suppressed(["Gone@Example.TEST", "here@example.test"], 2000.0)
        assert found == {"Gone@Example.TEST": entry("gone@example.test")}

    def test_suppressing_again_replaces_the_entry(self, storage: Backend) -> None:
        """A second entry for an address replaces the first, times and reason."""
        storage.suppress([entry("gone@example.test")])
        later = Suppression("gone@example.test", "operator", 5000.0, 9000.0)
        storage.suppress([later])
        assert storage.suppressions(6000.0) == [later]
        assert storage.suppressed(["gone@example.test"], 8999.0) == {
            "gone@example.test": later
        }

    def test_suppressions_list_oldest_first(self, storage: Backend) -> None:
        """The list holds the entries in force, oldest first, ties by address."""
        b = entry("b@example.test", since=1000.0)
        a = entry("a@example.test", since=1000.0)
        c = entry("c@example.test", since=900.0)
        ended = entry("d@example.test", since=100.0, until=200.0)
        storage.suppress([b, a, c, ended])
        assert storage.suppressions(1500.0) == [c, a, b]

    def test_unsuppress_removes_and_says_what(self, storage: Backend) -> None:
        """Removing returns the folded addresses that had entries, and they are
        no longer suppressed; others are untouched."""
        storage.suppress([entry("a@example.test"), entry("b@example.test")])
        removed = storage.unsuppress(["A@example.test", "nobody@example.test"])
        assert removed == ["a@example.test"]
        assert storage.suppressed(["a@example.test", "b@example.test"], 2000.0) == {
            "b@example.test": entry("b@example.test")
        }
        assert storage.unsuppress(["a@example.test"]) == []

    def test_many_addresses_in_one_lookup(self, storage: Backend) -> None:
        """A lookup of more addresses than one statement names finds them all."""
        entries = [entry(f"r{n}@example.test") for n in range(0, 1200, 2)]
        storage.suppress(entries)
        asked = [f"r{n}@example.test" for n in range(1200)]
        found = storage.suppressed(asked, 2000.0)
        assert sorted(found) == sorted(e.address for e in entries)

    def test_an_empty_lookup_finds_nothing(self, storage: Backend) -> None:
        """No addresses, no entries; nothing to add is no error."""
        storage.suppress([])
        assert storage.suppressed([], 2000.0) == {}


class SuspensionContract:
    """suspend, resume and suspensions."""

    def test_a_destination_is_suspended_until_its_entry_ends(
        self, storage: Backend
    ) -> None:
        """A suspension is listed while in force, and replaced by a second one
        for the same destination."""
        first = Suspension("gmail", "421 4.7.28 rate limited", 1000.0, 2000.0)
        other = Suspension("relay", "operator", 1000.0, 5000.0)
        storage.suspend(first)
        storage.suspend(other)
        assert storage.suspensions(1500.0) == [first, other]
        assert storage.suspensions(2000.0) == [other]
        second = Suspension("gmail", "operator", 1500.0, 9000.0)
        storage.suspend(second)
        assert storage.suspensions(2500.0) == [second, other]

    def test_resume_ends_a_suspension(self, storage: Backend) -> None:
        """Resuming removes the suspension and says whether there was one."""
        storage.suspend(Suspension("gmail", "operator", 1000.0, 2000.0))
        assert storage.resume("gmail") is True
        assert storage.suspensions(1500.0) == []
        assert storage.resume("gmail") is False
