"""The shipped traffic-shaping presets, as data.

:data:`PRESET_DATA` holds the limits of the large mailbox providers, each
recognised by the names of its mail exchangers, and :data:`RULE_DATA` the
replies that suspend or slow a destination. The figures follow KumoMTA's
shipped shaping file: connections at once and messages per connection; no
provider publishes a message rate, so none is set. A configuration replaces a
preset by giving a destination of the same name
(``ShapingConfig.destinations``), or drops them all (``presets = false``).
:mod:`.shaping` builds its values from these.
"""

from __future__ import annotations

__all__ = ["PRESET_DATA", "RULE_DATA"]

#: The named destinations: keyword arguments of ``DestinationLimits``.
PRESET_DATA: tuple[dict[str, object], ...] = (
    {
        "name": "gmail",
        "mx_suffixes": (".google.com", ".googlemail.com"),
        "connections": 5,
        "messages_per_connection": 50,
    },
    {
        "name": "outlook",
        "mx_suffixes": (".olc.protection.outlook.com", ".mail.protection.outlook.com"),
        "connections": 5,
        "messages_per_connection": 50,
    },
    {
        "name": "yahoo",
        "mx_suffixes": (".yahoodns.net",),
        "connections": 5,
        "messages_per_connection": 20,
    },
    {
        "name": "apple",
        "mx_suffixes": (".icloud.com",),
        "connections": 10,
        "messages_per_connection": 5,
    },
)

#: The replies that act on their destination: keyword arguments of
#: ``ReplyRule``. Gmail's 4.7.28 says the sending rate is too high: stop for
#: an hour. Microsoft's 4.7.650 (S843, S844) throttles by IP reputation: slow
#: to a message a minute for 90 minutes. Yahoo's TS04 / TSS04 defers for
#: reputation: stop for two hours.
RULE_DATA: tuple[dict[str, object], ...] = (
    {"pattern": r"^421 4\.7\.28\b", "action": "suspend", "duration": 3600.0},
    {
        "pattern": r"^451 4\.7\.650\b",
        "action": "slow",
        "duration": 5400.0,
        "rate": 1,
        "per": 60.0,
    },
    {"pattern": r"\bTSS?04\b", "action": "suspend", "duration": 7200.0},
)
