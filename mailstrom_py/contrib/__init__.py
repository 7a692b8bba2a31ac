"""Integrations with frameworks, each in a package of its own that needs the
framework (and the extra of the same name) installed."""
