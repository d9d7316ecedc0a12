"""`python -m service [flags]`: argv -> settings -> serve. Run with --help for every flag."""

from __future__ import annotations

import sys
import tomllib

from pydantic import ValidationError

from service.logs import configure_logging
from service.settings import load_settings

BAD_SETTINGS = 2  # the exit status argparse uses for bad flags


def main(argv: list[str] | None = None) -> int:
    """Parse settings from argv/env/config file and serve until SIGTERM or SIGINT (with server.workers > 1,
    supervise that many worker processes instead); return the exit code.

    Returns BAD_SETTINGS, after one message on stderr, when a setting is unknown or invalid.
    """
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError, tomllib.TOMLDecodeError) as exc:  # incl. UnknownSettingError
        print(f"python -m service: invalid settings: {_one_message(exc)}", file=sys.stderr)
        return BAD_SETTINGS
    if settings.server.worker_count > 1:
        configure_logging(settings.logging, worker="supervisor")
        from service.workers.supervisor import Supervisor

        return Supervisor(settings).run()
    configure_logging(settings.logging)
    from service import eventloop
    from service.app import serve

    eventloop.run(serve(settings), settings.server.event_loop)
    return 0


def _one_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
