"""Logging set-up shared by the CLI and the processes it spawns."""

from __future__ import annotations

import logging
import warnings


def quiet_libraries(debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    if debug:
        return
    # Libraries log routine events (a closed connection, a registered model) at high levels.
    for name in ("kafka", "mlflow", "prefect", "alembic"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore")
