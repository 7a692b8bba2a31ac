"""The contract of SMTP TLS report counts kept in storage, for backends that
keep them (:class:`~mailstrom_py.storage.tls_tally.TlsReportTally`); others
skip it."""

from __future__ import annotations

import threading

import pytest

from ...storage.tls_tally import TlsReportTally, TlsSessionCount
from .common import Backend

__all__ = ["TlsTallyContract"]

POLICY = '{"policy-domain":"d.test","policy-type":"no-policy-found"}'
FAILURE = '{"receiving-ip":"192.0.2.1","result-type":"starttls-not-supported"}'
DAY1 = "2026-03-01"
DAY2 = "2026-03-02"
DAY3 = "2026-03-03"


def _tally(storage: Backend) -> TlsReportTally:
    if not isinstance(storage, TlsReportTally):
        pytest.skip("the backend keeps no TLS report counts")
    return storage


def row(
    count: int = 1,
    *,
    domain: str = "d.test",
    day: str = DAY1,
    policy: str = POLICY,
    failure: str = "",
) -> TlsSessionCount:
    return TlsSessionCount(domain, day, policy, failure, count)


def counts(rows: list[TlsSessionCount]) -> dict[tuple[str, str, str, str], int]:
    """``rows`` by report domain, day, policy and failure; each must be there
    once."""
    found = {(r.report_domain, r.day, r.policy, r.failure): r.count for r in rows}
    assert len(found) == len(rows), rows
    return found


class TlsTallyContract:
    """tally_tls_sessions() and take_tls_sessions()."""

    def test_counts_add_up_across_calls(self, storage: Backend) -> None:
        """Counts of one report domain, day, policy and failure add up, within
        a call and across calls; each other one is a row of its own, with its
        texts as given (non-ASCII, and a policy longer than an index entry)."""
        tally = _tally(storage)
        long_policy = '{"policy-string":["' + "mx: mx.d.test\u00e9 " * 400 + '"]}'
        tally.tally_tls_sessions([row(2), row(3), row(1, failure=FAILURE)])
        tally.tally_tls_sessions([row(4), row(7, domain="\u00e9.test")])
        tally.tally_tls_sessions([row(1, policy=long_policy), row(2, day=DAY2)])
        assert counts(tally.take_tls_sessions(DAY3)) == {
            ("d.test", DAY1, POLICY, ""): 9,
            ("d.test", DAY1, POLICY, FAILURE): 1,
            ("\u00e9.test", DAY1, POLICY, ""): 7,
            ("d.test", DAY1, long_policy, ""): 1,
            ("d.test", DAY2, POLICY, ""): 2,
        }

    def test_counts_from_threads_at_once_add_up(self, storage: Backend) -> None:
        """Counts added from several threads at once lose none."""
        tally = _tally(storage)

        def add(k: int) -> None:
            for _ in range(10):
                tally.tally_tls_sessions([row(1), row(2, domain=f"d{k}.test")])

        threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        found = counts(tally.take_tls_sessions(DAY2))
        assert found == {
            ("d.test", DAY1, POLICY, ""): 40,
            **{(f"d{k}.test", DAY1, POLICY, ""): 20 for k in range(4)},
        }

    def test_a_take_removes_what_it_returns(self, storage: Backend) -> None:
        """Taken counts are gone: a later take, after new counts, returns the
        new ones alone."""
        tally = _tally(storage)
        tally.tally_tls_sessions([row(5)])
        assert counts(tally.take_tls_sessions(DAY2)) == {
            ("d.test", DAY1, POLICY, ""): 5
        }
        tally.tally_tls_sessions([row(1, day=DAY2)])
        assert counts(tally.take_tls_sessions(DAY3)) == {
            ("d.test", DAY2, POLICY, ""): 1
        }

    def test_the_day_of_a_take_and_later_days_are_not_taken(
        self, storage: Backend
    ) -> None:
        """A take closes the days before its day only: counts of that day
        and later stay, and come with the take of a later day."""
        tally = _tally(storage)
        tally.tally_tls_sessions([row(1), row(2, day=DAY2), row(3, day=DAY3)])
        assert counts(tally.take_tls_sessions(DAY2)) == {
            ("d.test", DAY1, POLICY, ""): 1
        }
        assert counts(tally.take_tls_sessions(DAY3)) == {
            ("d.test", DAY2, POLICY, ""): 2
        }

    def test_a_day_is_closed_once(self, storage: Backend) -> None:
        """A second take of a day, or a take of an earlier day, returns
        nothing, even for counts added since: those late counts of a closed
        day come with the next later day's take."""
        tally = _tally(storage)
        tally.tally_tls_sessions([row(1)])
        assert len(tally.take_tls_sessions(DAY2)) == 1
        tally.tally_tls_sessions([row(4)])
        assert tally.take_tls_sessions(DAY2) == []
        assert tally.take_tls_sessions(DAY1) == []
        tally.tally_tls_sessions([row(2, day=DAY2)])
        assert counts(tally.take_tls_sessions(DAY3)) == {
            ("d.test", DAY1, POLICY, ""): 4,
            ("d.test", DAY2, POLICY, ""): 2,
        }

    def test_threads_taking_at_once_get_each_count_once(self, storage: Backend) -> None:
        """Of several threads taking the same day at once, one gets the
        counts and the others nothing."""
        tally = _tally(storage)
        tally.tally_tls_sessions([row(3), row(1, domain="e.test")])
        got: list[list[TlsSessionCount]] = []
        start = threading.Barrier(4)

        def take() -> None:
            start.wait()
            got.append(tally.take_tls_sessions(DAY2))

        threads = [threading.Thread(target=take) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(len(rows) for rows in got) == [0, 0, 0, 2]

    @pytest.mark.parametrize(
        "bad",
        [
            row(domain=""),
            row(domain="d .test"),
            row(domain="d.test\n"),
            row(domain="d" * 256),
            row(day="2026-3-01"),
            row(day="2026-02-30"),
            row(day="20260301"),
            row(day=""),
            row(0),
            row(-1),
            row(True),
            row(2**31),
            row(policy=""),
            row(policy="{}\0"),
            row(failure="\0"),
        ],
    )
    def test_a_bad_row_is_refused_and_nothing_counted(
        self, storage: Backend, bad: TlsSessionCount
    ) -> None:
        """An empty or spaced report domain, a day not written YYYY-MM-DD, a
        count below 1 (or not an int), an empty policy or a NUL is a
        ValueError, and the good rows of the same call are not counted
        either."""
        tally = _tally(storage)
        with pytest.raises(ValueError, match=r"session|day|domain|text"):
            tally.tally_tls_sessions([row(1), bad])
        assert tally.take_tls_sessions(DAY3) == []

    @pytest.mark.parametrize("day", ["", "2026-03", "2026-13-01", "tomorrow"])
    def test_a_take_of_a_bad_day_is_refused(self, storage: Backend, day: str) -> None:
        """A take before something that is not a day is a ValueError and
        takes nothing."""
        tally = _tally(storage)
        tally.tally_tls_sessions([row(1)])
        with pytest.raises(ValueError, match="day"):
            tally.take_tls_sessions(day)
        assert len(tally.take_tls_sessions(DAY2)) == 1
