"""driftctl's edge: the CLI, the one settings object, the embedded stack, the ledger, status."""

__version__ = "0.1.0"
