"""Shared test setup.  pytest-trio runs every async test (trio_mode in pyproject.toml); the
``corral_runtime`` and ``wakeups`` fixtures come from corral's own pytest plugin
(``runtime.testing.plugin``, a ``pytest11`` entry point), as they do for users."""
