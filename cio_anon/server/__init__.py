"""`cio-anon serve`: a local endpoint for Customer.io's Track API v1/v2 and Data
Pipelines, applying each request through the same ingest modules and service functions
as `replay`, plus a JSON inspection API for tests. Imported only by `serve`.

- `app`: options, start-up and stop (the socket, the record file, uvicorn), access log
- `routes`: the Starlette application: credentials, Host check, bodies, each API, inspection
- `writer`: the one thread that owns the workspace (group commit, one savepoint per operation)
"""

from cio_anon.server.app import (
    Server,
    ServerConfig,
    check_bind,
    half_a_pair,
    make_clock,
    run_until_stopped,
)

__all__ = ["Server", "ServerConfig", "check_bind", "half_a_pair", "make_clock", "run_until_stopped"]
