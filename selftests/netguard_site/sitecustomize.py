"""Installs linkgate's self-test network fence (selftests/netguard.py) in every Python process started with this
directory on PYTHONPATH: the e2e harness puts it there for the gate subprocesses it runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# By path, not `import selftests.netguard`: at interpreter startup the project root is not on sys.path yet.
_spec = importlib.util.spec_from_file_location(
    "linkgate_selftests_netguard", Path(__file__).resolve().parent.parent / "netguard.py"
)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
