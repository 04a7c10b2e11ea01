"""The JSON body POSTed to a channel's `notify_url` (spec/notifications.md section 6). Pure.

Choices where Zoho is silent or odd:

* `resource_uri` is `{base}/crm/v2/{Module}` whatever version created the channel (real
  callbacks do that).
* `query_params` are the notify_url's query string parsed the standard way (URL-decoded keys
  and values, blank values kept); a key repeated keeps its last value. `zoho_quirk=True`
  mimics S002's sample, where the first key keeps its leading `?`.
* `affected_fields` / `affected_values` are present exactly when the notification carries
  affected values (the channel asked for them when the event matched); a related-action
  notification then has both as empty lists. Subform fields are left out of both, and stored
  UTC date-times are shown in the org's zone.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from crmwatch.domain import clock
from crmwatch.domain.channels import Channel
from crmwatch.domain.matching import Affected, Notification
from crmwatch.domain.modules import Module

_STORED_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def query_params(url: str, *, zoho_quirk: bool = False) -> dict[str, str]:
    """The query string of `url` as a map; the last of repeated keys wins."""
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    if zoho_quirk and pairs:
        pairs[0] = ("?" + pairs[0][0], pairs[0][1])
    return dict(pairs)


def build_body(n: Notification, channel: Channel, base_url: str, server_time_ms: int, *,
               tz: ZoneInfo, module: Module | None = None,
               zoho_quirk: bool = False) -> dict[str, Any]:
    """Zoho's callback body for one notification to `channel`.

    `module` (the notification's module) gives field types: without it, values are shown by
    shape (a stored UTC date-time string is converted) and no field is left out.
    """
    body: dict[str, Any] = {
        "server_time": server_time_ms,
        "module": n.module,
        "resource_uri": f"{base_url.rstrip('/')}/crm/v2/{n.module}",
        "ids": list(n.ids),
        "operation": n.operation,
        "channel_id": n.channel_id,
        "token": channel.token,
        "query_params": query_params(channel.notify_url, zoho_quirk=zoho_quirk),
    }
    if n.affected is not None:
        shown = [_shown(a, module, tz) for a in n.affected]
        body["affected_fields"] = [{a.record_id: list(a.fields)} for a in shown]
        body["affected_values"] = [{"record_id": a.record_id, "values": dict(a.values)}
                                   for a in shown]
    return body


def without_values(body_text: str) -> str:
    """A webhook body as the delivery log shows it to a caller who may not read the module:
    every `affected_values[].values` emptied to `{}`, the rest (ids, operation, field names)
    as sent. Text that is not such a body is shown as nothing at all.

    >>> without_values('{"ids":["1"],"affected_values":[{"record_id":"1","values":{"a":2}}]}')
    '{"ids":["1"],"affected_values":[{"record_id":"1","values":{}}]}'
    """
    try:
        body = json.loads(body_text)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    affected = body.get("affected_values")
    if isinstance(affected, list):
        body["affected_values"] = [{**a, "values": {}} if isinstance(a, dict) else {}
                                   for a in affected]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _shown(a: Affected, module: Module | None, tz: ZoneInfo) -> Affected:
    names = tuple(f for f in a.fields if not _is_subform(module, f))
    values = {k: _value(module, k, v, tz) for k, v in a.values.items()
              if not _is_subform(module, k)}
    return Affected(a.record_id, names, values)


def _is_subform(module: Module | None, name: str) -> bool:
    f = module.by_name.get(name) if module is not None else None
    return f is not None and f.data_type == "subform"


def _value(module: Module | None, name: str, value: object, tz: ZoneInfo) -> object:
    if not isinstance(value, str):
        return value
    if module is not None:
        f = module.by_name.get(name)
        if f is None or f.data_type != "datetime":
            return value
    elif not _STORED_DATETIME.match(value):
        return value
    try:
        return clock.local_text(value, tz)
    except ValueError:
        return value

