"""The configuration file: every setting, its errors, its secrets, and `config check`."""

from __future__ import annotations

import configparser
import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailstrom_py import (
    Config,
    ConfigError,
    DirectConfig,
    DkimConfig,
    DsnPolicy,
    MemoryStorage,
    Outbox,
    RelayConfig,
    RetryPolicy,
    Timeouts,
    config_from_mapping,
    load_config,
)
from mailstrom_py.cli.configfile import load_demo_config
from mailstrom_py.config.loader import parse_duration
from mailstrom_py.config.schema import file_fields
from mailstrom_py.config.secrets import hide_dsn
from mailstrom_py.config.settings import (
    DashboardSettings,
    LoadedConfig,
    LoggingSettings,
    StorageSettings,
    split_listen,
)
from mailstrom_py.message.dkim import generate_key, write_key

ROOT = Path(__file__).resolve().parents[1]

RELAY = """
helo_name = "app.example.org"
[delivery]
kind = "relay"
host = "127.0.0.1"
port = 2525
tls = "none"
"""


def load(tmp_path: Path, text: str, **environ: str) -> LoadedConfig:
    path = tmp_path / "mailstrom.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ)


def load_error(tmp_path: Path, text: str, **environ: str) -> str:
    path = tmp_path / "mailstrom.toml"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **environ)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


@pytest.fixture(scope="module")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    paths = {}
    for selector, algorithm in [("rsa1", "rsa-sha256"), ("ed1", "ed25519-sha256")]:
        key = generate_key("example.org", selector, algorithm, bits=1024)  # type: ignore[arg-type]
        paths[selector] = folder / f"{selector}.pem"
        write_key(key, paths[selector])
    return paths


class TestSections:
    def test_the_minimal_file_gives_a_relay_and_an_sqlite_file(
        self, tmp_path: Path
    ) -> None:
        """The documented minimal shape loads into Config and StorageSettings."""
        loaded = load(tmp_path, RELAY + '[storage]\nsqlite = "/var/lib/m/outbox.db"\n')
        assert loaded.config == Config(
            helo_name="app.example.org",
            delivery=RelayConfig(host="127.0.0.1", port=2525, tls="none"),
        )
        assert loaded.storage == StorageSettings(sqlite="/var/lib/m/outbox.db")
        assert loaded.storage.kind == "sqlite"
        assert loaded.logging == LoggingSettings()
        assert loaded.source == str(tmp_path / "mailstrom.toml")

    def test_top_level_keys_are_the_config_fields(self, tmp_path: Path) -> None:
        """Top-level keys set the scalar fields of Config by their Python names."""
        loaded = load(
            tmp_path,
            "delivery_threads = 8\nallow_8bit = true\nrequire_tls = true\n"
            'session_max_messages = 10\nsession_idle_timeout = "1m"\n'
            "destination_concurrency = 3\n" + RELAY,
        )
        config = loaded.config
        assert (config.delivery_threads, config.allow_8bit, config.require_tls) == (
            8,
            True,
            True,
        )
        assert config.session_max_messages == 10
        assert config.session_idle_timeout == 60.0
        assert config.destination_concurrency == 3

    def test_a_default_sender_in_a_file_reaches_the_messages(
        self, tmp_path: Path
    ) -> None:
        """default_from is a top-level key, and an outbox built from the file
        gives it to a message without From, as header and envelope sender."""
        loaded = load(
            tmp_path, 'default_from = "Example App <noreply@example.org>"\n' + RELAY
        )
        assert loaded.config.default_from == "Example App <noreply@example.org>"
        with Outbox(loaded.config, MemoryStorage()) as outbox:
            message_id = outbox.send_email(b"To: b@example.org\r\n\r\nHi\r\n")
            stored = outbox.storage.email(message_id)
        assert stored.mail_from == "noreply@example.org"
        assert stored.data.startswith(b"From: Example App <noreply@example.org>\r\n")

    def test_a_default_sender_that_is_no_mailbox_names_its_key(
        self, tmp_path: Path
    ) -> None:
        """A default_from that is not one mailbox is an error naming the key."""
        loaded = load(
            tmp_path, 'default_from = "a@example.org, b@example.org"\n' + RELAY
        )
        with pytest.raises(ConfigError) as info:
            Outbox(loaded.config, MemoryStorage())
        assert "default_from" in info.value.args

    def test_every_relay_setting_loads(self, tmp_path: Path) -> None:
        """[delivery] kind = "relay" takes every RelayConfig setting."""
        loaded = load(
            tmp_path,
            'helo_name = "app.example.org"\n[delivery]\nkind = "relay"\n'
            'host = "smtp.example.org"\nport = 465\ntls = "implicit"\n'
            'username = "app"\npassword = "pw"\nca_file = "/etc/ca.pem"\n'
            "allow_plaintext_auth = true\n",
        )
        assert loaded.config.delivery == RelayConfig(
            host="smtp.example.org",
            port=465,
            tls="implicit",
            username="app",
            password="pw",
            ca_file="/etc/ca.pem",
            allow_plaintext_auth=True,
        )

    def test_every_direct_setting_loads(self, tmp_path: Path) -> None:
        """[delivery] kind = "direct" takes every DirectConfig setting."""
        loaded = load(
            tmp_path,
            'helo_name = "mx.example.org"\n[delivery]\nkind = "direct"\n'
            'nameservers = ["127.0.0.53", "::1"]\ndns_port = 5353\nsmtp_port = 2525\n'
            'dns_timeout = "2s"\ndns_lifetime = 9\nmax_addresses = 3\n'
            "max_sessions = 1\nmx_cache_size = 0\nverify_tls = true\n"
            'ca_file = "/etc/ca.pem"\n',
        )
        assert loaded.config.delivery == DirectConfig(
            nameservers=("127.0.0.53", "::1"),
            dns_port=5353,
            smtp_port=2525,
            dns_timeout=2.0,
            dns_lifetime=9.0,
            max_addresses=3,
            max_sessions=1,
            mx_cache_size=0,
            verify_tls=True,
            ca_file="/etc/ca.pem",
        )

    def test_timeouts_take_seconds_and_durations(self, tmp_path: Path) -> None:
        """[timeouts] sets each Timeouts field, in seconds or as "5m"-style durations."""
        loaded = load(
            tmp_path,
            RELAY + '[timeouts]\nconnect = 10\ngreeting = "5m"\nmail = "1m30s"\n'
            'rcpt = 2.5\ndata_init = "2m"\ndata_block = "3m"\ndata_done = "10m"\n'
            'quit = "20s"\n',
        )
        assert loaded.config.timeouts == Timeouts(10, 300, 90, 2.5, 120, 180, 600, 20)

    def test_retry_sets_the_retry_policy(self, tmp_path: Path) -> None:
        """[retry] sets each RetryPolicy field; delays and age take durations."""
        loaded = load(
            tmp_path,
            RELAY + '[retry]\ninitial_delay = "1m"\nmultiplier = 3\nmax_delay = "2h"\n'
            'jitter = 0.2\nmax_attempts = 7\nmax_age = "1d"\n',
        )
        assert loaded.config.retry == RetryPolicy(
            initial_delay=60,
            multiplier=3,
            max_delay=7200,
            jitter=0.2,
            max_attempts=7,
            max_age=86400,
        )

    def test_dkim_is_an_array_of_key_files(
        self, tmp_path: Path, dkim_keys: dict[str, Path]
    ) -> None:
        """[[dkim]] tables name key files and load as DkimConfig values, in order."""
        loaded = load(
            tmp_path,
            RELAY + '[[dkim]]\ndomain = "example.org"\nselector = "rsa1"\n'
            f'private_key = "{dkim_keys["rsa1"]}"\n'
            '[[dkim]]\ndomain = "example.org"\nselector = "ed1"\n'
            f'private_key = "{dkim_keys["ed1"]}"\nalgorithm = "ed25519-sha256"\n',
        )
        assert loaded.config.dkim_keys == (
            DkimConfig("example.org", "rsa1", str(dkim_keys["rsa1"])),
            DkimConfig(
                "example.org", "ed1", str(dkim_keys["ed1"]), algorithm="ed25519-sha256"
            ),
        )
        assert loaded.config.dkim_keys[1].key is not None

    def test_one_dkim_table_is_one_key(
        self, tmp_path: Path, dkim_keys: dict[str, Path]
    ) -> None:
        """A single [dkim] table is one key, as Config(dkim=DkimConfig(...)) is."""
        loaded = load(
            tmp_path,
            RELAY + '[dkim]\ndomain = "example.org"\nselector = "rsa1"\n'
            f'private_key = "{dkim_keys["rsa1"]}"\n',
        )
        assert [k.selector for k in loaded.config.dkim_keys] == ["rsa1"]

    def test_dsn_is_true_or_a_policy_table(self, tmp_path: Path) -> None:
        """dsn = true turns reports on; a [dsn] table is a DsnPolicy."""
        assert load(tmp_path, "dsn = true\n" + RELAY).config.dsn is True
        loaded = load(
            tmp_path,
            RELAY + '[dsn]\non_failure = false\ndelay_after = "4h"\n'
            "delay_after_attempts = 5\n",
        )
        assert loaded.config.dsn == DsnPolicy(
            on_failure=False, delay_after=14400, delay_after_attempts=5
        )

    def test_storage_is_sqlite_postgres_or_memory(self, tmp_path: Path) -> None:
        """[storage] names an SQLite file or a PostgreSQL database; without it, memory."""
        sqlite = load(
            tmp_path,
            RELAY + '[storage]\nsqlite = "outbox.db"\nsynchronous = "NORMAL"\n'
            'attempt_synchronous = "FULL"\nbusy_timeout = "30s"\n',
        ).storage
        assert sqlite == StorageSettings(
            sqlite="outbox.db",
            synchronous="NORMAL",
            attempt_synchronous="FULL",
            busy_timeout=30,
        )
        postgres = load(
            tmp_path,
            RELAY + '[storage]\npostgres = "postgresql://app@db.internal/mail"\n',
        ).storage
        assert (postgres.kind, postgres.postgres) == (
            "postgres",
            "postgresql://app@db.internal/mail",
        )
        assert load(tmp_path, RELAY).storage.kind == "memory"

    def test_logging_sets_level_and_format(self, tmp_path: Path) -> None:
        """[logging] takes a level name in any case and "text" or "json"."""
        loaded = load(tmp_path, RELAY + '[logging]\nlevel = "debug"\nformat = "json"\n')
        assert loaded.logging == LoggingSettings(level="DEBUG", format="json")
        assert loaded.logging.levelno == 10

    def test_dashboard_sets_where_it_listens_and_its_token(
        self, tmp_path: Path
    ) -> None:
        """[dashboard] takes listen, a secret token, read_only and allowed_hosts;
        without it the dashboard listens on loopback with no token set."""
        loaded = load(
            tmp_path,
            RELAY + '[dashboard]\nlisten = "[::1]:9000"\n'
            'token_env = "DASH_TOKEN"\nread_only = true\n'
            'allowed_hosts = ["mail-admin.example.org"]\n',
            DASH_TOKEN="a-token-from-the-environment",
        )
        assert loaded.dashboard == DashboardSettings(
            listen="[::1]:9000",
            token="a-token-from-the-environment",
            read_only=True,
            allowed_hosts=("mail-admin.example.org",),
        )
        assert "a-token" not in repr(loaded.dashboard)
        assert load(tmp_path, RELAY).dashboard == DashboardSettings(
            listen="127.0.0.1:8026"
        )

    def test_a_mapping_of_the_same_shape_gives_the_same_settings(
        self, tmp_path: Path
    ) -> None:
        """config_from_mapping() takes a parsed dict, as a framework's settings are."""
        text = RELAY + '[retry]\nmax_age = "2d"\n[storage]\nsqlite = "outbox.db"\n'
        from_file = load(tmp_path, text)
        from_dict = config_from_mapping(tomllib.loads(text), source="settings.MAIL")
        assert (from_dict.config, from_dict.storage) == (
            from_file.config,
            from_file.storage,
        )
        assert from_dict.source == "settings.MAIL"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:8026", "127.0.0.1", 8026), ("[::1]:80", "::1", 80),
     ("localhost:1", "localhost", 1)],
)  # fmt: skip
def test_listen_is_host_and_port(text: str, host: str, port: int) -> None:
    """HOST:PORT splits at its last colon; an IPv6 host comes in brackets."""
    assert split_listen(text) == (host, port)


def test_none_in_a_mapping_means_not_given() -> None:
    """A framework's settings may say None for a setting left at its default."""
    loaded = config_from_mapping(
        {
            "helo_name": "app.example.org",
            "delivery": {"kind": "relay", "host": "127.0.0.1", "port": None,
                         "password": None, "password_env": None, "tls": "none"},
            "dsn": None,
            "storage": {"sqlite": None, "postgres": None},
        }
    )  # fmt: skip
    assert loaded.config == Config(
        helo_name="app.example.org",
        delivery=RelayConfig(host="127.0.0.1", tls="none"),
    )
    assert loaded.storage.kind == "memory"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("1.5h", 5400), ("2 m", 120)],
)  # fmt: skip
def test_durations_take_the_units_s_m_h_d(text: str, seconds: float) -> None:
    """A duration is numbers with units s, m, h or d, summed."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "5 minutes", "m", "-5m", "5w", ""])
def test_other_strings_are_not_durations(text: str) -> None:
    """Anything else is not a duration (a bare number must be a TOML number)."""
    assert parse_duration(text) is None


PYTHON_ONLY = {"ssl_context", "resolver", "mta_sts_context"}


@pytest.mark.parametrize(
    "cls",
    [Config, RelayConfig, DirectConfig, Timeouts, RetryPolicy, DkimConfig, DsnPolicy],
)
def test_every_setting_but_python_objects_is_a_file_key(cls: type) -> None:
    """Each constructor argument is a key of the same name, except ready-made objects."""
    arguments = {f.name for f in dataclasses.fields(cls) if f.init}
    assert arguments - set(file_fields(cls)) <= PYTHON_ONLY
    assert set(file_fields(cls)) <= arguments


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            RELAY.replace("port = 2525", 'port = "25x"'),
            'delivery.port: expected an integer from 1 to 65535, got "25x"',
            id="wrong type",
        ),
        pytest.param(
            RELAY.replace("2525", "70000"),
            "delivery.port: must be a TCP port (1-65535), not 70000",
            id="out of range",
        ),
        pytest.param(
            RELAY.replace("port =", "prot ="),
            'delivery.prot: unknown key for kind "relay" (did you mean "port"?)',
            id="misspelt key",
        ),
        pytest.param(
            'helo = "a.example.org"\n' + RELAY,
            'helo: unknown key (did you mean "helo_name"?)',
            id="misspelt top-level key",
        ),
        pytest.param(
            RELAY + "[loging]\n",
            'loging: unknown key (did you mean "logging"?)',
            id="misspelt section",
        ),
        pytest.param(
            RELAY + 'nameservers = ["127.0.0.1"]\n',
            'delivery.nameservers: is a setting of kind "direct", not of "relay"',
            id="key of the other kind",
        ),
        pytest.param(
            RELAY.replace('"relay"', '"relai"'),
            'delivery.kind: expected one of "relay", "direct", got "relai" '
            '(did you mean "relay"?)',
            id="unknown kind",
        ),
        pytest.param(
            RELAY.replace('kind = "relay"', ""),
            'delivery.kind: is required but missing; one of "relay", "direct"',
            id="no kind",
        ),
        pytest.param(
            RELAY.replace('helo_name = "app.example.org"', ""),
            "helo_name: is required but missing",
            id="no helo_name",
        ),
        pytest.param(
            'helo_name = "app.example.org"\n',
            "delivery: is required but missing",
            id="no delivery",
        ),
        pytest.param(
            RELAY.replace('"none"', '"ssl"'),
            'delivery.tls: expected one of "starttls", "implicit", "none", got "ssl"',
            id="unknown choice",
        ),
        pytest.param(
            'require_tls = "yes"\n' + RELAY,
            'require_tls: expected true or false, got "yes"',
            id="not a boolean",
        ),
        pytest.param(
            "delivery_threads = 2.5\n" + RELAY,
            "delivery_threads: expected an integer, got 2.5",
            id="not an integer",
        ),
        pytest.param(
            RELAY + '[retry]\nmax_age = "5 minutes"\n',
            "retry.max_age: expected a number of seconds or a duration such as "
            '"30s", "5m", "2h", "1d", got "5 minutes"',
            id="not a duration",
        ),
        pytest.param(
            RELAY + '[retry]\nmultiplier = "2m"\n',
            'retry.multiplier: expected a number, got "2m"',
            id="a ratio is not a duration",
        ),
        pytest.param(
            RELAY + "[timeouts]\nconnect = -1\n",
            "timeouts.connect: must be a finite number of seconds > 0, not -1.0",
            id="negative timeout",
        ),
        pytest.param(
            RELAY + "[dsn]\ndelay_after_attempts = 0\n",
            "dsn.delay_after_attempts: must be an integer >= 1, not 0",
            id="dsn threshold",
        ),
        pytest.param(
            'dsn = "yes"\n' + RELAY,
            'dsn: expected true or false or a table, got "yes"',
            id="dsn of the wrong type",
        ),
        pytest.param(
            RELAY + '[[dkim]]\ndomain = "example.org"\nselector = "s1"\n'
            'private_key = "/nonexistent/key.pem"\n',
            "dkim[0].private_key: cannot read the key file: No such file or directory",
            id="missing key file",
        ),
        pytest.param(
            RELAY + '[[dkim]]\ndomain = "example.org"\nselector = "s1"\n',
            "dkim[0].private_key: is required but missing",
            id="dkim without a key",
        ),
        pytest.param(
            RELAY.replace('kind = "relay"', 'kind = "direct"').replace(
                'host = "127.0.0.1"\nport = 2525\ntls = "none"', 'nameservers = "::1"'
            ),
            'delivery.nameservers: expected a list of strings, got "::1"',
            id="not a list",
        ),
        pytest.param(
            RELAY + '[storage]\nsqlite = "a.db"\npostgres = "postgresql:///m"\n',
            "storage.sqlite: give sqlite or postgres, not both",
            id="two storages",
        ),
        pytest.param(
            RELAY + '[storage]\nsqlite = "a.db"\nsynchronous = "full"\n',
            'storage.synchronous: expected one of "FULL", "NORMAL", got "full" '
            '(did you mean "FULL"?)',
            id="choice in the wrong case",
        ),
        pytest.param(
            RELAY + '[logging]\nlevel = "verbose"\n',
            "logging.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
            "not 'verbose'",
            id="unknown log level",
        ),
        pytest.param(
            RELAY + '[logging]\nformat = "xml"\n',
            'logging.format: expected one of "text", "json", got "xml"',
            id="unknown log format",
        ),
        pytest.param(
            'helo_name = "app.example.org"\ndelivery = 5\n',
            "delivery: expected a table, got 5",
            id="delivery that is no table",
        ),
        pytest.param(
            RELAY + '[[dkim]]\ndomain = "example.org"\nselector = "s1"\n'
            "private_key = 5\n",
            "dkim[0].private_key: expected a string, got 5",
            id="key path of the wrong type",
        ),
        pytest.param(
            RELAY + '[dashboard]\nlisten = "8026"\n',
            "dashboard.listen: expected HOST:PORT, such as 127.0.0.1:8026, got '8026'",
            id="listen without a host",
        ),
        pytest.param(
            RELAY + '[dashboard]\nlisten = "::1:8026"\n',
            "dashboard.listen: expected HOST:PORT, such as 127.0.0.1:8026, "
            "got '::1:8026'",
            id="IPv6 listen without brackets",
        ),
        pytest.param(
            RELAY + '[dashboard]\nlisten = "127.0.0.1:70000"\n',
            "dashboard.listen: the port must be 1 to 65535, got '127.0.0.1:70000'",
            id="listen port out of range",
        ),
        pytest.param(
            "storage = 5\n" + RELAY,
            "storage: expected a table, got 5",
            id="section that is no table",
        ),
    ],
)
def test_an_error_names_the_key_path_and_the_value(
    tmp_path: Path, text: str, error: str
) -> None:
    """Each kind of mistake is a ConfigError: the file, the key path, what is wrong."""
    assert load_error(tmp_path, text) == error


def test_a_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    """A syntax error names the file and the line."""
    message = load_error(tmp_path, RELAY + "port = \n")
    assert message.startswith("not valid TOML: ") and "line" in message


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    """A file that cannot be read is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"^/nonexistent\.toml: cannot read the file"):
        load_config("/nonexistent.toml")


def test_a_mapping_error_starts_with_its_source() -> None:
    """config_from_mapping() names its source as load_config() names the file."""
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"helo_name": 5}, source="settings.MAILSTROM")
    assert str(info.value) == (
        "settings.MAILSTROM: helo_name: expected a string, got 5"
    )


class TestSecrets:
    AUTH = RELAY.replace('tls = "none"', 'tls = "starttls"') + 'username = "app"\n'

    def test_a_password_comes_from_a_file(self, tmp_path: Path) -> None:
        """password_file reads the file, less its final line break."""
        secret = tmp_path / "relay-password"
        secret.write_text("s3cret\n", encoding="utf-8")
        loaded = load(tmp_path, self.AUTH + f'password_file = "{secret}"\n')
        assert isinstance(loaded.config.delivery, RelayConfig)
        assert loaded.config.delivery.password == "s3cret"

    def test_a_password_comes_from_the_environment(self, tmp_path: Path) -> None:
        """password_env names the environment variable holding the password."""
        loaded = load(
            tmp_path,
            self.AUTH + 'password_env = "MAILSTROM_RELAY_PASSWORD"\n',
            MAILSTROM_RELAY_PASSWORD="s3cret",
        )
        assert isinstance(loaded.config.delivery, RelayConfig)
        assert loaded.config.delivery.password == "s3cret"

    def test_load_config_reads_os_environ_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without environ=, *_env keys look in the process environment."""
        monkeypatch.setenv("MAILSTROM_TEST_PASSWORD", "from-env")
        path = tmp_path / "m.toml"
        path.write_text(
            self.AUTH + 'password_env = "MAILSTROM_TEST_PASSWORD"\n', encoding="utf-8"
        )
        delivery = load_config(path).config.delivery
        assert isinstance(delivery, RelayConfig) and delivery.password == "from-env"

    def test_the_postgres_connection_and_password_come_from_elsewhere(
        self, tmp_path: Path
    ) -> None:
        """[storage] postgres and password take the same _file and _env forms."""
        secret = tmp_path / "pg-password"
        secret.write_text("pg-s3cret", encoding="utf-8")
        loaded = load(
            tmp_path,
            RELAY + '[storage]\npostgres_env = "DATABASE_URL"\n'
            f'password_file = "{secret}"\n',
            DATABASE_URL="postgresql://app@db.internal/mail",
        )
        assert loaded.storage.postgres == "postgresql://app@db.internal/mail"
        assert loaded.storage.password == "pg-s3cret"

    @pytest.mark.parametrize(
        ("lines", "error"),
        [
            (
                'password = "a"\npassword_env = "X"\n',
                "delivery.password: give one of password, password_env, not several",
            ),
            (
                'password_env = "MAILSTROM_UNSET"\n',
                'delivery.password_env: the environment variable "MAILSTROM_UNSET" '
                "is not set",
            ),
            (
                'password_env = "MAILSTROM_EMPTY"\n',
                'delivery.password_env: the environment variable "MAILSTROM_EMPTY" '
                "is empty",
            ),
            (
                'password_file = "/nonexistent/pw"\n',
                'delivery.password_file: cannot read "/nonexistent/pw": '
                "No such file or directory",
            ),
            ("password = 12345\n", "delivery.password: expected a string"),
        ],
    )
    def test_a_secret_that_cannot_be_had_is_an_error(
        self, tmp_path: Path, lines: str, error: str
    ) -> None:
        """Two sources, an unset variable or an unreadable file name the key."""
        assert load_error(tmp_path, self.AUTH + lines, MAILSTROM_EMPTY="") == error

    def test_an_error_about_a_secret_does_not_show_it(self, tmp_path: Path) -> None:
        """A password the relay settings refuse is not quoted in the error."""
        secret = tmp_path / "pw"
        secret.write_text("s3cret\nsecond line\n", encoding="utf-8")
        message = load_error(tmp_path, self.AUTH + f'password_file = "{secret}"\n')
        assert message.startswith("delivery.password: must be non-empty")
        assert "s3cret" not in message

    def test_a_storage_password_needs_postgres(self, tmp_path: Path) -> None:
        """A database password with an SQLite file is a mistake, and said so."""
        message = load_error(
            tmp_path, RELAY + '[storage]\nsqlite = "a.db"\npassword = "x"\n'
        )
        assert message == "storage.password: a password is only used with postgres"


def run_cli(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mailstrom_py`` with this checkout first on the path."""
    return subprocess.run(
        [sys.executable, "-m", "mailstrom_py", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), **environ},
    )


class TestConfigCheck:
    SECRETS = ("relay-s3cret", "dsn-s3cret", "pg-s3cret", "dashboard-s3cret-token")

    def write(self, tmp_path: Path) -> Path:
        (tmp_path / "pg-password").write_text("pg-s3cret\n", encoding="utf-8")
        path = tmp_path / "mailstrom.toml"
        path.write_text(
            RELAY.replace('tls = "none"', 'tls = "starttls"')
            + 'username = "app"\npassword_env = "MAILSTROM_RELAY_PASSWORD"\n'
            + "[storage]\n"
            + 'postgres = "postgresql://app:dsn-s3cret@db.internal/mail"\n'
            + f'password_file = "{tmp_path / "pg-password"}"\n'
            + '[dashboard]\ntoken = "dashboard-s3cret-token"\n',
            encoding="utf-8",
        )
        return path

    def test_it_prints_every_setting_with_secrets_hidden(self, tmp_path: Path) -> None:
        """`config check FILE` shows all settings, defaults too, and no secret."""
        done = run_cli(
            "config", "check", str(self.write(tmp_path)),
            MAILSTROM_RELAY_PASSWORD="relay-s3cret",
        )  # fmt: skip
        assert (done.returncode, done.stderr) == (0, "")
        for secret in self.SECRETS:
            assert secret not in done.stdout
        assert 'password = "********"' in done.stdout
        assert (
            '[dashboard]\nlisten = "127.0.0.1:8026"\ntoken = "********"' in done.stdout
        )
        assert 'postgres = "postgresql://app:********@db.internal/mail"' in done.stdout
        assert "max_age = 432000.0  # 5d" in done.stdout
        for name in file_fields(Timeouts):
            assert f"\n{name} = " in done.stdout
        assert "# max_attempts: not set" in done.stdout

    def test_what_it_prints_loads_back_to_the_same_settings(
        self, tmp_path: Path
    ) -> None:
        """The output is itself a configuration file, equal but for the hidden secrets."""
        path = self.write(tmp_path)
        environ = {"MAILSTROM_RELAY_PASSWORD": "relay-s3cret"}
        done = run_cli("config", "check", str(path), **environ)
        printed = tmp_path / "printed.toml"
        printed.write_text(done.stdout, encoding="utf-8")
        original, again = load_config(path, environ=environ), load_config(printed)
        assert isinstance(original.config.delivery, RelayConfig)
        hidden = dataclasses.replace(original.config.delivery, password="********")
        assert again.config == dataclasses.replace(original.config, delivery=hidden)
        assert again.storage == dataclasses.replace(
            original.storage,
            postgres="postgresql://app:********@db.internal/mail",
            password="********",
        )
        assert again.logging == original.logging
        assert again.dashboard == dataclasses.replace(
            original.dashboard, token="********"
        )

    def test_a_bad_file_exits_2_with_the_error_on_stderr(self, tmp_path: Path) -> None:
        """A bad setting prints one line naming the file and the key, and exits 2."""
        path = tmp_path / "bad.toml"
        path.write_text(RELAY.replace("2525", '"25x"'), encoding="utf-8")
        done = run_cli("config", "check", str(path))
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            f"mailstrom-py: {path}: delivery.port: expected an integer from 1 to "
            '65535, got "25x"\n'
        )

    def test_a_missing_file_exits_2(self, tmp_path: Path) -> None:
        """A file that is not there is reported the same way."""
        done = run_cli("config", "check", str(tmp_path / "none.toml"))
        assert done.returncode == 2
        assert "none.toml: cannot read the file: No such file" in done.stderr


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:pw@db/mail", "postgresql://app:********@db/mail"),
        ("postgresql://app:p@ss@db/mail", "postgresql://app:********@db/mail"),
        ("postgresql://app@db/mail?password=pw&sslmode=require",
         "postgresql://app@db/mail?password=********&sslmode=require"),
        ("host=db password=pw dbname=mail", "host=db password=******** dbname=mail"),
        ("host=db password = 'p w' dbname=mail",
         "host=db password = ******** dbname=mail"),
        ("postgresql://app@db/mail", "postgresql://app@db/mail"),
    ],
)  # fmt: skip
def test_a_connection_string_is_shown_without_its_password(
    dsn: str, shown: str
) -> None:
    """Only the password of a connection string is hidden, in either form."""
    assert hide_dsn(dsn) == shown


class TestDemoConfig:
    def test_it_relays_to_loopback_port_8025_into_an_sqlite_file(self) -> None:
        """The shipped demo configuration relays to 127.0.0.1:8025 without TLS."""
        loaded = load_demo_config()
        assert loaded.config.delivery == RelayConfig(
            host="127.0.0.1", port=8025, tls="none"
        )
        assert loaded.storage.kind == "sqlite"
        assert loaded.storage.sqlite is not None
        assert not os.path.isabs(loaded.storage.sqlite)

    def test_it_ships_as_package_data(self) -> None:
        """setup.cfg installs the demo configuration with the package."""
        setup = configparser.ConfigParser()
        setup.read(ROOT / "setup.cfg")
        assert "cli/demo.toml" in setup["options.package_data"]["mailstrom_py"]

    def test_config_check_accepts_it(self) -> None:
        """`config check` on the demo configuration exits 0."""
        done = run_cli("config", "check", str(ROOT / "mailstrom_py/cli/demo.toml"))
        assert (done.returncode, done.stderr) == (0, "")
        assert 'kind = "relay"' in done.stdout
