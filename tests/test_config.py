"""Configuration is validated when it is built."""

from __future__ import annotations

import pytest

from mailstrom_py import Config, ConfigError, DirectConfig, RelayConfig, Timeouts


class TestRelayConfig:
    @pytest.mark.parametrize(
        ("tls", "port"), [("starttls", 587), ("implicit", 465), ("none", 25)]
    )
    def test_port_defaults_follow_the_tls_mode(self, tls: str, port: int) -> None:
        """Without a port, each TLS mode gets its customary one."""
        assert RelayConfig(host="smtp.example.org", tls=tls).port == port  # type: ignore[arg-type]

    def test_password_is_not_in_repr(self) -> None:
        """repr() of a relay never shows the password."""
        relay = RelayConfig(host="smtp.example.org", username="app", password="s3cret")
        assert "s3cret" not in repr(relay)
        assert "s3cret" not in repr(Config(helo_name="a.example.org", delivery=relay))

    def test_credentials_over_plaintext_need_consent(self) -> None:
        """tls='none' with credentials is refused unless plaintext AUTH is allowed (D8)."""
        with pytest.raises(ConfigError, match="allow_plaintext_auth"):
            RelayConfig(host="127.0.0.1", tls="none", username="u", password="p")
        relay = RelayConfig(
            host="127.0.0.1",
            tls="none",
            username="u",
            password="p",
            allow_plaintext_auth=True,
        )
        assert relay.username == "u"

    @pytest.mark.parametrize(
        ("host", "dialled"),
        [
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[IPv6:::1]", "::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("127.0.0.1", "127.0.0.1"),
            ("[127.0.0.1]", "127.0.0.1"),
            ("smtp_relay", "smtp_relay"),
            ("mail_1.svc.example.org", "mail_1.svc.example.org"),
        ],
    )
    def test_ip_literals_and_underscore_names_are_valid_hosts(
        self, host: str, dialled: str
    ) -> None:
        """IPv4 and IPv6 addresses, bracketed or not, and names with "_" are
        accepted; brackets are dropped so the bare address is dialled."""
        assert RelayConfig(host=host).host == dialled

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"host": ""},
            {"host": "bad host"},
            {"host": "[relay.example.org]"},
            {"host": "[::1"},
            {"host": "[IPv6:127.0.0.1]"},
            {"host": "-relay.example.org"},
            {"host": "relay..example.org"},
            {"host": "smtp.example.org", "port": 0},
            {"host": "smtp.example.org", "port": 70000},
            {"host": "smtp.example.org", "tls": "ssl"},
            {"host": "smtp.example.org", "username": "u"},
            {"host": "smtp.example.org", "username": "u\r\nMAIL", "password": "p"},
            {
                "host": "smtp.example.org",
                "ca_file": "/nonexistent",
                "ssl_context": object(),
            },
        ],
    )
    def test_bad_values_raise_config_error(self, kwargs: dict[str, object]) -> None:
        """Each invalid relay setting raises ConfigError, a ValueError."""
        with pytest.raises(ConfigError) as info:
            RelayConfig(**kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)

    def test_unreadable_ca_file_is_a_config_error(self, tmp_path: object) -> None:
        """A CA file that cannot be loaded is reported as a ConfigError."""
        relay = RelayConfig(host="smtp.example.org", ca_file="/nonexistent/ca.pem")
        with pytest.raises(ConfigError, match="CA file"):
            relay.tls_context()


class TestConfig:
    @pytest.mark.parametrize(
        "helo", ["", "has space", "a..b", "-bad.example", "x" * 300]
    )
    def test_helo_name_must_be_a_host_name(self, helo: str) -> None:
        """The HELO name is checked, since every server sees it."""
        with pytest.raises(ConfigError):
            Config(helo_name=helo, delivery=RelayConfig(host="smtp.example.org"))

    def test_address_literal_is_a_valid_helo_name(self) -> None:
        """An address literal may stand in for a host name in EHLO."""
        config = Config(
            helo_name="[127.0.0.1]", delivery=RelayConfig(host="smtp.example.org")
        )
        assert config.helo_name == "[127.0.0.1]"

    def test_delivery_threads_must_be_positive(self) -> None:
        """At least one delivery thread is needed."""
        with pytest.raises(ConfigError):
            Config(
                helo_name="a.example.org",
                delivery=RelayConfig(host="smtp.example.org"),
                delivery_threads=0,
            )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"session_max_messages": 0},
            {"session_idle_timeout": 0},
            {"destination_concurrency": 0},
            {"destination_concurrency": True},
        ],
    )
    def test_connection_settings_are_checked(self, kwargs: dict[str, object]) -> None:
        """Connection reuse and concurrency settings must be positive."""
        with pytest.raises(ConfigError):
            Config(
                helo_name="a.example.org",
                delivery=RelayConfig(host="smtp.example.org"),
                **kwargs,  # type: ignore[arg-type]
            )

    @pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), True, "30"])
    def test_drain_timeout_is_a_finite_number_of_seconds(self, seconds: object) -> None:
        """The time stop() gives due mail is checked (0 is allowed: no wait)."""
        with pytest.raises(ConfigError, match="drain_timeout"):
            Config(
                helo_name="a.example.org",
                delivery=RelayConfig(host="smtp.example.org"),
                drain_timeout=seconds,  # type: ignore[arg-type]
            )
        relay = RelayConfig(host="smtp.example.org")
        assert Config(helo_name="a.example.org", delivery=relay, drain_timeout=0)

    def test_timeouts_must_be_positive_and_finite(self) -> None:
        """A zero or infinite timeout would block forever or never work."""
        with pytest.raises(ConfigError):
            Timeouts(connect=0)
        with pytest.raises(ConfigError):
            Timeouts(data_done=float("inf"))

    def test_direct_config_checks_ports(self) -> None:
        """DirectConfig validates its ports too."""
        with pytest.raises(ConfigError):
            DirectConfig(smtp_port=0)
