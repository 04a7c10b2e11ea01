"""`/crmwatch/v1/openapi.json`: the OpenAPI 3.1 document of the whole API."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmwatch.api.http import json_response
from crmwatch.api.state import state


@cache
def document() -> dict[str, Any]:
    text = resources.files("crmwatch.api").joinpath("openapi.yaml").read_text("utf-8")
    return yaml.safe_load(text)  # type: ignore[no-any-return]


async def openapi(request: Request) -> Response:
    doc = dict(document())
    doc["servers"] = [{"url": state(request).base_url}]
    return json_response(doc)


routes = [Route("/crmwatch/v1/openapi.json", openapi, methods=["GET"])]
