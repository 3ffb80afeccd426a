"""The `harness` console script: take over SIGINT and SIGTERM before anything slow is
imported, so a Ctrl-C during start-up is handled like one during training."""

from __future__ import annotations


def main() -> None:
    from harness.interrupts import GUARD

    GUARD.install()
    from harness.cli.main import main as cli_main

    cli_main()
