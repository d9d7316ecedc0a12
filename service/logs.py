"""Logging set-up: plain or JSON lines on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

from service.settings import LoggingSettings

# The id of the gRPC call being served (set per call by service/rpc/interceptors.py; "-" outside calls).
# NOTE: contextvars follow asyncio tasks, not executor threads: logs from worker threads show "-".
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the current call's id), and `worker` when given, to every record passing through."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        if self._worker is not None:
            record.worker = self._worker
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with any `extra=` fields the caller attached."""

    _SKIP = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: LoggingSettings, worker: str | None = None) -> None:
    """Route the root logger to stderr at the configured level and format.

    `worker` names the process in every line (e.g. "w0", "supervisor") when the server runs workers.
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        tag = f"[{worker}] " if worker is not None else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s {tag}[%(request_id)s]: %(message)s")
        )
    handler.addFilter(RequestIdFilter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
