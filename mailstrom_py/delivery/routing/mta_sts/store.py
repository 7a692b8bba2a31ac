"""A :class:`~.cache.PolicyStore` in a JSON file: cached MTA-STS policies
that outlive a restart (RFC 8461 §5 counts on them against downgrades).

The file holds one JSON object, domain -> the cached policy's JSON. Every
``put`` rewrites it whole, through a temporary file renamed over it, so a
crash leaves the old file or the new one. Policies change at most daily per
domain, so the writes are few. A file that cannot be read is treated as
empty (and logged): the cache is an optimisation and a defence, never a
reason to stop delivering.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

__all__ = ["FilePolicyStore"]

log = logging.getLogger(__name__)


class FilePolicyStore:
    """Cached policies in the JSON file ``path``; safe for several threads of
    one process (processes sharing a file may lose each other's writes, which
    costs only a fetch)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._entries = self._load()

    def get(self, domain: str) -> str | None:
        with self._lock:
            return self._entries.get(domain)

    def put(self, domain: str, policy_json: str) -> None:
        with self._lock:
            self._entries[domain] = policy_json
            self._save()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the MTA-STS cache %s: %s", self._path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("ignoring the MTA-STS cache %s: not an object", self._path)
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    def _save(self) -> None:
        text = json.dumps(self._entries, sort_keys=True)
        directory = self._path.parent
        try:
            fd, temporary = tempfile.mkstemp(
                dir=directory, prefix=f".{self._path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            log.warning("cannot write the MTA-STS cache %s: %s", self._path, exc)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path)
        except OSError as exc:
            log.warning("cannot write the MTA-STS cache %s: %s", self._path, exc)
            Path(temporary).unlink(missing_ok=True)
