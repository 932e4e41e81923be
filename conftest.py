"""Loads the linkgate plugin; the gate's checks live in tests/, the project's own tests in selftests/."""

pytest_plugins = ["linkgate.plugin"]
