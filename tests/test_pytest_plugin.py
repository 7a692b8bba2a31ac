"""The pytest plugin, as a user's project meets it.

Each test writes a small project into a temporary directory (an application
module that sends mail, and tests for it) and runs pytest on it in a fresh
process (see ``support.userproject``), so the plugin is loaded the way pytest
loads it for a user.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from support.userproject import PLUGIN, run_pytest, write_project

ROOT = Path(__file__).resolve().parents[1]

APP = '''
from email.message import EmailMessage


def send_welcome(mailer, address):
    """Send the welcome mail to a new user; return its message id."""
    message = EmailMessage()
    message["From"] = "Shop <shop@example.org>"
    message["To"] = address
    message["Subject"] = "Welcome to the shop"
    message.set_content("Hello, and welcome!\\n")
    return mailer.send_email(message)
'''

TESTS = """
from mailstrom_py import DeliveryResult

from app import send_welcome


def test_the_welcome_mail_goes_to_the_new_user(mailstrom_outbox):
    send_welcome(mailstrom_outbox.mailer, "Bob <bob@example.org>")
    assert len(mailstrom_outbox) == 1
    [mail] = mailstrom_outbox
    assert mail.subject == "Welcome to the shop"
    assert mail.to == ["bob@example.org"]
    assert mail.from_ == "shop@example.org"
    assert mail.body == "Hello, and welcome!\\n"
    assert mail.message["To"].addresses[0].display_name == "Bob"


def test_each_test_gets_an_empty_outbox(mailstrom_outbox):
    assert len(mailstrom_outbox) == 0


def test_an_unknown_user_is_a_failure(mailstrom_outbox):
    mailstrom_outbox.transport.reply_to("nobody@example.org", 550, "5.1.1 no such user")
    message_id = send_welcome(mailstrom_outbox.mailer, "nobody@example.org")
    assert len(mailstrom_outbox) == 0
    status = mailstrom_outbox.mailer.query_status(message_id)
    assert status.recipients[0].result is DeliveryResult.FAILED


def test_a_busy_server_delays_the_mail_until_the_retry(mailstrom_outbox):
    mailstrom_outbox.transport.reply_to("bob@example.org", 451, times=1)
    message_id = send_welcome(mailstrom_outbox.mailer, "bob@example.org")
    assert len(mailstrom_outbox) == 0
    status = mailstrom_outbox.mailer.query_status(message_id)
    mailstrom_outbox.clock.advance_to(status.next_attempt_at)
    assert len(mailstrom_outbox) == 1


def test_the_project_configuration_is_used(mailstrom_outbox):
    message_id = send_welcome(mailstrom_outbox.mailer, "bob@example.org")
    assert message_id.endswith("@shop.example.org")
"""

CONFTEST = """
import pytest

from mailstrom_py import Config, RelayConfig


@pytest.fixture
def mailstrom_config():
    return Config(helo_name="shop.example.org", delivery=RelayConfig("localhost"))
"""

PLAIN_TESTS = """
def test_arithmetic():
    assert 1 + 1 == 2
"""


def test_a_project_tests_its_mail_with_the_mailstrom_outbox_fixture(
    tmp_path: Path,
) -> None:
    """A user's tests send mail through their own code and assert on
    mailstrom_outbox, script refusals and step the clock to a retry; a
    conftest.py gives the mailer the project's configuration."""
    project = write_project(
        tmp_path, {"app.py": APP, "test_app.py": TESTS, "conftest.py": CONFTEST}
    )
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "5 passed" in done.stdout
    assert "warning" not in done.stdout.lower()


def test_a_failing_assertion_on_the_outbox_fails_the_users_test(
    tmp_path: Path,
) -> None:
    """The fixture reports what was sent faithfully: a wrong expectation fails."""
    wrong = TESTS.replace('["bob@example.org"]', '["alice@example.org"]')
    project = write_project(
        tmp_path, {"app.py": APP, "test_app.py": wrong, "conftest.py": CONFTEST}
    )
    done = run_pytest(project, "-q")
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 failed, 4 passed" in done.stdout
    assert "test_the_welcome_mail_goes_to_the_new_user" in done.stdout


def test_a_project_that_does_not_use_the_plugin_is_left_alone(
    tmp_path: Path,
) -> None:
    """With the plugin loaded, a project without mail tests runs as before,
    warning-free, and the fixtures are listed for whoever wants them."""
    project = write_project(tmp_path, {"test_plain.py": PLAIN_TESTS})
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    listed = run_pytest(project, "--fixtures", "-q")
    assert "mailstrom_outbox" in listed.stdout
    assert "mailstrom_config" in listed.stdout


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    """setup.cfg registers the plugin with pytest, under the name mailstrom_py."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    declared = parser["options.entry_points"]["pytest11"].split("\n")
    assert f"mailstrom_py = {PLUGIN}" in [line.strip() for line in declared]
