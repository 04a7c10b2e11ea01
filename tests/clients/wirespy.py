"""Record what an SDK puts on the wire for `actions/watch`, from inside its child process.

The SDK logs only URLs, headers and query parameters, never request bodies. Both official SDKs
send every request through the module-level `requests.get/post/put/patch/delete` functions;
this wraps them (the SDK itself stays unmodified) and appends one JSON line per watch request
to `sent.jsonl` in the current directory (the driver's work directory), then sends it as is.
Read back with tests.clients.sdkrun.sent_requests.
"""

from __future__ import annotations

import json
from typing import Any

import requests


def record_watch_requests(path: str = "sent.jsonl") -> None:
    for name in ("get", "post", "put", "patch", "delete"):
        real = getattr(requests, name)

        def send(*args: Any, _real: Any = real, _method: str = name.upper(),
                 **kwargs: Any) -> Any:
            url = kwargs.get("url") or (args[0] if args else "")
            if "/actions/watch" in url:
                data = kwargs.get("data")
                if isinstance(data, bytes):
                    data = data.decode()
                with open(path, "a") as f:
                    f.write(json.dumps({"method": _method, "url": url,
                                        "params": kwargs.get("params"),
                                        "headers": dict(kwargs.get("headers") or {}),
                                        "body": data}) + "\n")
            return _real(*args, **kwargs)

        setattr(requests, name, send)
