"""The stores at the bottom: one engine factory, the append-only ledger and the stage heartbeats."""
