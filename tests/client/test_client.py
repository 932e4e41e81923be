"""The client machine that runs SSMS to create the link, read with PowerShell over WinRM (spec CLIENT-01)."""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.views import ClientHostView

SSMS_DOWNLOAD = "https://learn.microsoft.com/sql/ssms/download-sql-server-management-studio-ssms"


@prereq(
    "client-ssms-version",
    severity=Severity.RECOMMENDED,
    spec="CLIENT-01",
    docs=SSMS_DOWNLOAD,
    remediation="On the machine that runs SSMS ({target}): install the latest SQL Server Management Studio (19.0 or "
    "later; from 21 on through the Visual Studio installer) and create the link with it",
)
def test_client_ssms_version(client_host: ClientHostView) -> None:
    """SQL Server Management Studio 19.0 or later is installed on the client machine.

    The link wizards ("New Managed Instance link", "Fail over") exist only in SSMS 19.0 and later.
    """
    ssms = client_host.ssms
    found = ", ".join(f"SSMS {i.version_text}" for i in ssms.installs) or "no SSMS at all"
    assert ssms.supported, f"{ssms.computer or client_host.name} has {found}; the link needs SSMS 19.0 or later"
