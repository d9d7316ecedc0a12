"""`python -m service [flags]`: argv -> settings -> serve. Run with --help for every flag."""

from __future__ import annotations

import sys

from service.logs import configure_logging
from service.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse settings from argv/env/config file and serve until SIGTERM or SIGINT (with server.workers > 1,
    supervise that many worker processes instead); return the exit code."""
    settings = load_settings(sys.argv[1:] if argv is None else argv)
    if settings.server.worker_count > 1:
        configure_logging(settings.logging, worker="supervisor")
        from service.workers.supervisor import Supervisor

        return Supervisor(settings).run()
    configure_logging(settings.logging)
    from service import eventloop
    from service.app import serve

    eventloop.run(serve(settings), settings.server.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
