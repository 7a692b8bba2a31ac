"""Django settings for a process that a test of the integration starts.

The test gives the rest, or overrides these, in the environment variable
``MAILSTROM_TEST_DJANGO``: a JSON object of setting names and values. Each
test runs Django in processes of its own, so no setting outlives its test.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "only-for-tests"
INSTALLED_APPS = ["mailstrom_py.contrib.django"]
EMAIL_BACKEND = "mailstrom_py.contrib.django.EmailBackend"
DEFAULT_FROM_EMAIL = "Example App <app@example.org>"
USE_TZ = True

globals().update(json.loads(os.environ.get("MAILSTROM_TEST_DJANGO", "{}")))
