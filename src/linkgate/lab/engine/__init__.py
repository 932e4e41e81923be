"""The lab's T-SQL engine: simulated SQL Server and managed instances answering over DuckDB.

`SimulatedInstance(spec)` (from a scenario's `InstanceSpec`) is the `InstanceBackend` the TDS server
serves; `audit.classify()` tells read-only statements from state-changing ones in its `log()`.
"""

from linkgate.lab.engine.audit import classify, writes
from linkgate.lab.engine.instance import SimulatedInstance

__all__ = ["SimulatedInstance", "classify", "writes"]
