"""Logging set-up shared by the CLI and the processes it spawns."""

from __future__ import annotations

import logging
import warnings

from driftctl.settings import mask_url


class MaskSecrets(logging.Filter):
    """Every log line with the passwords of the URLs in it masked (a handler's filter sees the
    records of every logger, libraries' included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = mask_url(logging.Formatter().formatException(record.exc_info))
        return True


def mask_log_handlers() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskSecrets) for f in handler.filters):
            handler.addFilter(MaskSecrets())


def quiet_libraries(debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    mask_log_handlers()
    if debug:
        return
    # Libraries log routine events (a closed connection, a registered model) at high levels.
    for name in ("kafka", "mlflow", "prefect", "alembic"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore")
