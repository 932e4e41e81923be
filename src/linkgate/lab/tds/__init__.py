"""The lab's TDS 7.4 server: real ODBC drivers (Microsoft Driver 18, FreeTDS) log into simulated instances.

`LabSqlServer` serves any `linkgate.lab.backend.InstanceBackend`; the modules below it follow the
protocol's layers: packets → prelogin/tls → login → requests (batches, RPC) → response tokens.
"""

from linkgate.lab.tds.server import LabSqlServer
from linkgate.lab.tds.stats import InstanceStats

__all__ = ["InstanceStats", "LabSqlServer"]
