"""Starting `boxpack serve`: uvicorn with several worker processes, each making the application from the
configuration the command put in its environment (the store's credentials come from there too: the AWS
chain, as publish has it)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

import uvicorn

from .app import create_app
from .context import Config
from .limits import shared_table
from .protocol import BoundedHttpTools

ENVIRONMENT = "BOXPACK_SERVE_CONFIG"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s boxpack serve[%(process)d]: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
    "loggers": {
        "boxpack.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def app():  # uvicorn's factory: one application per worker process
    return create_app(Config(**json.loads(os.environ[ENVIRONMENT])))


def serve(config: Config, host: str, port: int, workers: int, trust_proxy: str | None = None) -> None:
    """Serve until stopped (SIGINT, SIGTERM), with workers processes on host:port, counting invalid tokens in one
    table they all map."""
    table, key = shared_table(config.failures_per_minute)
    try:
        os.environ[ENVIRONMENT] = json.dumps(asdict(replace(config, failures_file=table, failures_key=key)))
        uvicorn.run(f"{__name__}:app", factory=True, host=host, port=port, workers=workers, access_log=False,
                    log_config=LOGGING, proxy_headers=trust_proxy is not None, forwarded_allow_ips=trust_proxy or "",
                    server_header=False, timeout_keep_alive=5, http=BoundedHttpTools)
    finally:
        os.unlink(table)
