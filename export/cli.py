"""`rdec train ...` and `rdec eval ...` subcommands (torch is imported only when they run)."""
from __future__ import annotations


def register(sub) -> None:
    del sub  # commands are added as the training side lands
