"""Django integration: an email backend on an Outbox, and a worker command.

In ``settings.py``::

    EMAIL_BACKEND = "mailstrom_py.contrib.django.EmailBackend"
    INSTALLED_APPS = [..., "mailstrom_py.contrib.django"]  # for the command
    MAILSTROM_CONFIG = "/etc/mailstrom/mailstrom.toml"     # or MAILSTROM = {...}

Then ``send_mail()``, ``EmailMessage.send()`` and the rest of
:mod:`django.core.mail` queue their messages in the configured storage, and
``python manage.py mailstrom_worker`` (or ``mailstrom-py worker`` on the same
file) delivers them. See :mod:`.conf` for every setting.
"""

from __future__ import annotations

from .backend import EmailBackend
from .process import close_outbox, get_outbox

__all__ = ["EmailBackend", "close_outbox", "get_outbox"]
