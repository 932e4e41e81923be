"""linkgate: the pytest gate that proves an Azure SQL Managed Instance link's prerequisites hold."""

__version__ = "0.1.0"
