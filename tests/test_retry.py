"""RetryPolicy and reply classification: pure values and pure functions."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstrom_py import (
    ConfigError,
    DeliveryResult,
    RetryPolicy,
    SmtpReply,
    config_from_mapping,
)
from mailstrom_py.retry import classify_reply, status_code_for


class TestRetryPolicyDelays:
    def test_defaults_follow_postfix(self) -> None:
        """The default policy waits 5 minutes, doubles, caps at 4000 s, gives up at 5 days."""
        policy = RetryPolicy()
        assert (policy.initial_delay, policy.multiplier, policy.max_delay) == (
            300.0,
            2.0,
            4000.0,
        )
        assert policy.max_age == 5 * 24 * 3600

    @pytest.mark.parametrize(
        ("attempts", "expected"),
        [(1, 300.0), (2, 600.0), (3, 1200.0), (4, 2400.0), (5, 4000.0), (50, 4000.0)],
    )
    def test_delay_doubles_up_to_the_cap(self, attempts: int, expected: float) -> None:
        """Without jitter the delay after attempt n is initial * 2**(n-1), capped."""
        policy = RetryPolicy(jitter=0.0)
        assert policy.delay(attempts, random.Random(1)) == expected

    def test_huge_attempt_counts_do_not_overflow(self) -> None:
        """An absurd attempt count still gives the cap, not an OverflowError."""
        policy = RetryPolicy(jitter=0.0, multiplier=10.0)
        assert policy.delay(10_000, random.Random(1)) == policy.max_delay

    @given(
        attempts=st.integers(min_value=1, max_value=200),
        seed=st.integers(min_value=0, max_value=2**32),
    )
    def test_jitter_stays_within_its_band(self, attempts: int, seed: int) -> None:
        """Every jittered delay lies within (1 +- jitter) of the unjittered one."""
        policy = RetryPolicy(jitter=0.1)
        exact = RetryPolicy(jitter=0.0).delay(attempts, random.Random(seed))
        delay = policy.delay(attempts, random.Random(seed))
        assert exact * 0.9 <= delay <= exact * 1.1

    @given(attempts=st.integers(min_value=1, max_value=100))
    def test_delays_never_shrink_without_jitter(self, attempts: int) -> None:
        """Backoff is monotonic: a later attempt never waits less."""
        policy = RetryPolicy(jitter=0.0)
        rng = random.Random(0)
        assert policy.delay(attempts + 1, rng) >= policy.delay(attempts, rng)


class TestRetryPolicyGivingUp:
    def test_next_attempt_is_now_plus_delay(self) -> None:
        """While within its limits a message is due again after the delay."""
        policy = RetryPolicy(jitter=0.0)
        assert (
            policy.next_attempt_at(1, since=0.0, now=10.0, rng=random.Random()) == 310.0
        )

    def test_max_attempts_ends_retries(self) -> None:
        """After max_attempts attempts there is no next attempt."""
        policy = RetryPolicy(max_attempts=3)
        assert policy.next_attempt_at(2, 0.0, 0.0, random.Random()) is not None
        assert policy.next_attempt_at(3, 0.0, 0.0, random.Random()) is None

    def test_max_age_ends_retries(self) -> None:
        """A message as old as max_age is not retried."""
        policy = RetryPolicy(max_age=3600)
        assert (
            policy.next_attempt_at(1, since=0.0, now=3600.0, rng=random.Random())
            is None
        )

    def test_last_attempt_lands_on_the_expiry(self) -> None:
        """A delay that would outlive max_age is cut to one last attempt at expiry."""
        policy = RetryPolicy(initial_delay=600, max_delay=600, max_age=1000, jitter=0.0)
        assert (
            policy.next_attempt_at(1, since=0.0, now=900.0, rng=random.Random())
            == 1000.0
        )


class TestRetryPolicyValidation:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"initial_delay": -1},
            {"initial_delay": float("nan")},
            {"multiplier": 0.5},
            {"jitter": 1.0},
            {"jitter": -0.1},
            {"max_delay": 10, "initial_delay": 20},
            {"max_attempts": 0},
            {"max_age": float("inf")},
        ],
    )
    def test_bad_values_raise_config_error(self, kwargs: dict[str, float]) -> None:
        """An out-of-range value is refused when the policy is built."""
        with pytest.raises(ConfigError):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]


class TestReplyClassification:
    @pytest.mark.parametrize(
        ("code", "text", "result", "status"),
        [
            (250, "2.0.0 ok", DeliveryResult.DELIVERED, "2.0.0"),
            (450, "4.2.1 busy", DeliveryResult.DEFERRED, "4.2.1"),
            (550, "5.1.1 no such user", DeliveryResult.FAILED, "5.1.1"),
            (550, "4.1.1 contradicts itself", DeliveryResult.FAILED, "5.0.0"),
            (451, "try later", DeliveryResult.DEFERRED, "4.0.0"),
            (354, "go ahead", DeliveryResult.FAILED, "5.5.0"),
            (-1, "garbage", DeliveryResult.FAILED, "5.5.0"),
        ],
    )
    def test_the_reply_class_decides(
        self, code: int, text: str, result: DeliveryResult, status: str
    ) -> None:
        """2xx delivers, 4xx defers, 5xx fails; the code's class beats the enhanced code."""
        reply = SmtpReply.parse(code, text)
        assert classify_reply(reply) is result
        assert status_code_for(reply) == status


SCHEDULE = (120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0, 259200.0)


class TestRetrySchedule:
    """An explicit list of delays instead of exponential backoff."""

    def test_each_attempt_takes_its_entry_and_the_last_repeats(self) -> None:
        """The delay after attempt n is entry n of the schedule; past its end
        the last entry repeats."""
        policy = RetryPolicy(schedule=SCHEDULE, jitter=0.0)
        rng = random.Random(1)
        delays = [policy.delay(n, rng) for n in range(1, 11)]
        assert delays == [*SCHEDULE, 259200.0, 259200.0]
        assert policy.first_delay == 120.0

    def test_jitter_applies_to_the_entries(self) -> None:
        """Each entry is scaled by the jitter band, as backoff delays are."""
        policy = RetryPolicy(schedule=(100.0,), jitter=0.2)
        rng = random.Random(7)
        assert all(80.0 <= policy.delay(n, rng) <= 120.0 for n in range(1, 50))

    def test_age_and_attempt_limits_still_end_retries(self) -> None:
        """max_age and max_attempts end a schedule as they end backoff."""
        rng = random.Random(0)
        policy = RetryPolicy(schedule=SCHEDULE, jitter=0.0, max_age=1000.0)
        assert policy.next_attempt_at(1, 0.0, 0.0, rng) == 120.0
        assert policy.next_attempt_at(4, 0.0, 900.0, rng) == 1000.0
        assert policy.next_attempt_at(5, 0.0, 1000.0, rng) is None
        limited = RetryPolicy(schedule=SCHEDULE, max_attempts=3)
        assert limited.next_attempt_at(3, 0.0, 0.0, rng) is None

    @pytest.mark.parametrize("schedule", [(0.0,), (-5.0,), (math.inf,), "2m", (True,)])
    def test_bad_schedules_raise_config_error(self, schedule: object) -> None:
        """Every entry must be a finite number of seconds above zero."""
        with pytest.raises(ConfigError, match="schedule"):
            RetryPolicy(schedule=schedule)  # type: ignore[arg-type]

    def test_the_configuration_file_takes_durations(self) -> None:
        """``[retry] schedule`` takes a list of durations or seconds."""
        loaded = config_from_mapping(
            {
                "helo_name": "app.example.org",
                "delivery": {"kind": "relay", "host": "smtp.example.org"},
                "retry": {
                    "schedule": ["2m", "5m", "10m", "30m", "1h", "2h", "1d", 259200]
                },
            }
        )
        assert loaded.config.retry.schedule == SCHEDULE
        with pytest.raises(ConfigError, match=r"retry\.schedule"):
            config_from_mapping(
                {
                    "helo_name": "app.example.org",
                    "delivery": {"kind": "relay", "host": "smtp.example.org"},
                    "retry": {"schedule": ["2m", "soon"]},
                }
            )
