"""A Django project of settings only, for the tests of the Django integration."""
