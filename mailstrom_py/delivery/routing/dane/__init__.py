"""DANE for SMTP (RFC 7672): MX hosts authenticated by DNSSEC-signed TLSA records.

- :mod:`.records`: TLSA records of ``_25._tcp.<mx host>``, looked up with
  DNSSEC and judged usable or not (RFC 7672 §2.2, §3.1).
- :mod:`.verify`: a server's certificate chain matched against them (§3).

dnspython and cryptography are imported only when a lookup or a match runs.
"""

from __future__ import annotations

from .records import DANE_EE, DANE_TA, TlsaLookup, TlsaRecord, lookup_tlsa, tlsa_name
from .verify import DaneResult, association_data, peer_chain, verify_chain

__all__ = [
    "DANE_EE",
    "DANE_TA",
    "DaneResult",
    "TlsaLookup",
    "TlsaRecord",
    "association_data",
    "lookup_tlsa",
    "peer_chain",
    "tlsa_name",
    "verify_chain",
]
