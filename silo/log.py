"""Logging: every line names its party and job."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["LEVELS", "PartyLogger", "configure_logging", "party_logger"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class PartyLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each message with ``[party@job]``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[{extra.get('party')}@{extra.get('job')}] {msg}", kwargs


def party_logger(party: str, job: str) -> PartyLogger:
    return PartyLogger(logging.getLogger("silo"), {"party": party, "job": job})


def configure_logging(level: str | int) -> None:
    """Set the ``silo`` logger's level; give it a stderr handler if logging is unconfigured.

    Raises ``ValueError`` for an unknown level name.
    """
    if isinstance(level, str):
        if level.lower() not in LEVELS:
            raise ValueError(f"logging_level: expected one of {sorted(LEVELS)}, got {level!r}")
        level = LEVELS[level.lower()]
    logger = logging.getLogger("silo")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
