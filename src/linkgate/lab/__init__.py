"""The lab: simulated SQL Server, managed instance, hosts and Azure endpoint, speaking real protocols."""
