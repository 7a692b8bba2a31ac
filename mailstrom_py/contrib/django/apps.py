"""The Django application, installed for its ``mailstrom_worker`` command."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["MailstromConfig"]


class MailstromConfig(AppConfig):  # type: ignore[misc]
    """mailstrom_py as a Django application: it has no models, only a command."""

    name = "mailstrom_py.contrib.django"
    # The default label, the package's last name, would be "django".
    label = "mailstrom_py"
    verbose_name = "mailstrom_py"
