"""mssgw: an MSSanté operator gateway in one daemon."""

__version__ = "0.1.0"
