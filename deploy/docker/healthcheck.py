#!/usr/bin/env python3
"""A container health check for the Sunlight worker: GET a path of its metrics server.

    sunlight-healthcheck [/healthz | /readyz]

The port is the worker's own setting, read the way the worker reads it
(`Settings.from_env().metrics_port`, SUNLIGHT_METRICS_PORT, default 9464). Exit 0 on HTTP 200,
1 otherwise (not listening, 503, timeout), 2 when metrics are turned off (port 0): a health
check cannot work then, so say so instead of failing for an unclear reason. Docker counts any exit
but 0 as unhealthy: a deployment without metrics drops the health check (docs/deploy.md).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from streams.settings import Settings


def check(path: str = "/healthz", host: str = "127.0.0.1", timeout: float = 4.0) -> int:
    port = Settings.from_env().metrics_port
    if port == 0:
        print("sunlight-healthcheck: SUNLIGHT_METRICS_PORT is 0 (metrics off): nothing to check",
              file=sys.stderr)
        return 2
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return 0
            print(f"sunlight-healthcheck: {url} answered {response.status}", file=sys.stderr)
    except urllib.error.HTTPError as exc:
        print(f"sunlight-healthcheck: {url} answered {exc.code}", file=sys.stderr)
    except OSError as exc:  # refused, timed out, reset
        print(f"sunlight-healthcheck: {url}: {exc}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    if not path.startswith("/"):
        print(f"usage: sunlight-healthcheck [/healthz|/readyz], got {path!r}", file=sys.stderr)
        return 2
    return check(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
