"""driftctl's ground and its application.

At the bottom, what every other package stands on: `settings` (the one settings object),
`messages` (every message on the topics, typed and versioned), `stores` (ledger and
heartbeats) and `runtime` (embedded broker, environment, logs).
On top, in `driftctl.app`: the CLI, demo, status, console, plot and bench.
Imports point one way: app -> flows -> serving -> drift -> training -> ground.
"""

__version__ = "0.1.0"
