"""Importing mailstrom_py loads no heavy library until a feature needs it.

dnspython (direct delivery), dkimpy with PyNaCl and cryptography (DKIM), idna
(internationalised domains) and psycopg (PostgreSQL storage) are imported where
they are used, so a program that delivers plain mail through a relay never
loads them. Each check
runs in a fresh interpreter: what matters is what one import statement pulls in.
How long the import takes is measured by benchmarks/import_time.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = frozenset(
    {"dns", "dkim", "cryptography", "nacl", "idna", "psycopg", "psycopg_pool"}
)

_REPORT = """
import json, sys
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by(code: str) -> set[str]:
    """The heavy libraries in sys.modules after running ``code`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _REPORT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1])) & HEAVY


def test_importing_the_package_loads_no_heavy_library() -> None:
    """After `import mailstrom_py`, none of dns, dkim, cryptography, nacl, idna,
    psycopg is loaded."""
    assert loaded_by("import mailstrom_py") == set()


def test_a_relay_mailer_prepares_and_stores_mail_without_a_heavy_library() -> None:
    """Building a relay mailer and sending it an ASCII message loads none of them."""
    code = """
    import mailstrom_py as m
    config = m.Config(helo_name="app.test", delivery=m.RelayConfig("127.0.0.1", tls="none"))
    mailer = m.Mailstrom(config)
    mailer.send_email(b"From: a@example.test\\r\\nTo: b@example.test\\r\\n\\r\\nHi\\r\\n")
    mailer.stop()
    """
    assert loaded_by(code) == set()


def test_the_testing_kit_and_its_pytest_plugin_load_no_heavy_library() -> None:
    """Importing mailstrom_py.testing and its pytest plugin loads none of them."""
    assert loaded_by("import mailstrom_py.testing.plugin") == set()


def test_a_direct_mailer_loads_dnspython() -> None:
    """A mailer that delivers to MX hosts builds its resolver, so dnspython is loaded
    (and, with it, idna), which shows the checks above can see a loaded library."""
    code = """
    import mailstrom_py as m
    direct = m.DirectConfig(nameservers=["127.0.0.1"])
    m.Mailstrom(m.Config(helo_name="app.test", delivery=direct)).stop()
    """
    assert "dns" in loaded_by(code)


def test_dkim_signing_loads_dkimpy_and_cryptography() -> None:
    """A DKIM key is read with cryptography, and signing a message loads dkimpy."""
    code = """
    import mailstrom_py as m
    from mailstrom_py.message.dkim import generate_key
    key = generate_key("example.test", "sel", "ed25519-sha256")
    config = m.Config(
        helo_name="app.test",
        delivery=m.RelayConfig("127.0.0.1", tls="none"),
        dkim=key,
    )
    mailer = m.Mailstrom(config)
    mailer.send_email(b"From: a@example.test\\r\\nTo: b@example.test\\r\\n\\r\\nHi\\r\\n")
    assert mailer.storage.email(mailer.list_messages()[0].message_id).data.startswith(
        b"DKIM-Signature:"
    )
    mailer.stop()
    """
    assert {"dkim", "cryptography"} <= loaded_by(code)


def test_an_internationalised_domain_loads_idna() -> None:
    """A recipient at a U-label domain is converted with idna, loaded then."""
    code = """
    import mailstrom_py as m
    config = m.Config(helo_name="app.test", delivery=m.RelayConfig("127.0.0.1", tls="none"))
    mailer = m.Mailstrom(config)
    mailer.send_email(
        "From: a@example.test\\r\\nTo: b@stra\\u00dfe.test\\r\\n\\r\\nHi\\r\\n".encode()
    )
    mailer.stop()
    """
    assert "idna" in loaded_by(code)


def test_postgres_storage_loads_psycopg_when_asked_for() -> None:
    """mailstrom_py.PostgresStorage is imported on first use, and psycopg with it."""
    assert {"psycopg", "psycopg_pool"} <= loaded_by(
        "from mailstrom_py import PostgresStorage"
    )
