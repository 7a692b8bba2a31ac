"""TLS session results (RFC 8460) as the counts a
:class:`~mailstrom_py.storage.tls_tally.TlsReportTally` keeps, and back.

A session is counted under its policy entry and, for a failure, what the
report's failure details group it by, each as canonical JSON text (keys
sorted, no spaces), so that the same session from any worker adds to the same
count. A success keeps nothing but its policy: a report counts successes per
policy only.
"""

from __future__ import annotations

import json
from typing import Any

from ..delivery.tlsrpt import ReportedPolicy, SessionResult

__all__ = ["count_key", "counted_session"]

# The failure-detail fields of RFC 8460 §4.4, and the SessionResult
# attributes they come from.
_FAILURE_FIELDS = (
    ("result-type", "result_type"),
    ("sending-mta-ip", "sending_mta_ip"),
    ("receiving-mx-hostname", "receiving_mx_hostname"),
    ("receiving-mx-helo", "receiving_mx_helo"),
    ("receiving-ip", "receiving_ip"),
    ("failure-reason-code", "failure_reason_code"),
)
_POLICY_TYPES = ("sts", "tlsa", "no-policy-found")


def count_key(result: SessionResult) -> tuple[str, str]:
    """The policy and failure texts ``result`` is counted under: its policy
    entry, and ``""`` for a success or else its failure-detail fields that
    are not empty."""
    policy = _canonical(result.policy.as_json())
    if result.succeeded:
        return policy, ""
    failure = {
        name: getattr(result, attribute)
        for name, attribute in _FAILURE_FIELDS
        if getattr(result, attribute)
    }
    return policy, _canonical(failure)


def counted_session(policy: str, failure: str) -> SessionResult:
    """A session counted under ``policy`` and ``failure`` (as
    :func:`count_key` writes them).

    Raises:
        ValueError: the texts are not what :func:`count_key` writes.
    """
    entry = _object(policy)
    policy_type = entry.get("policy-type")
    domain = entry.get("policy-domain")
    strings = entry.get("policy-string", [])
    mx_hosts = entry.get("mx-host", [])
    if (
        policy_type not in _POLICY_TYPES
        or not isinstance(domain, str)
        or not _strings(strings)
        or not _strings(mx_hosts)
    ):
        raise ValueError(f"not a counted policy: {policy:.200}")
    reported = ReportedPolicy(policy_type, domain, tuple(strings), tuple(mx_hosts))
    if not failure:
        return SessionResult(reported)
    detail = _object(failure)
    fields = {attribute: detail.get(name, "") for name, attribute in _FAILURE_FIELDS}
    if not all(isinstance(value, str) for value in fields.values()):
        raise ValueError(f"not a counted failure: {failure:.200}")
    return SessionResult(reported, **fields)


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not counted JSON: {text:.200}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"not counted JSON: {text:.200}")
    return data


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)
