"""Drive the v2 SDK's `NotificationOperations` (zcrmsdk, zohocrmsdk2-0), unmodified, in a
child process.

The job and the report are those of sdk2_driver.py, whose record steps also work here. The
notification steps are named after the SDK methods:

    {"op": "enable_notifications" | "update_notification" | "update_notifications"
           | "disable_notification", "watch": [{"channel_id": 1000000068001, ...}]}
    {"op": "get_notification_details", "params": {"channel_id": 1000000068001, ...}}
    {"op": "disable_notifications", "channel_ids": [1000000068001]}

Keys of a `watch` item are set with the Notification setter of that name (`_delete_events`
with `set_deleteevents`); `channel_expiry` is an ISO 8601 string, given to the SDK as a
datetime. The body of every watch request is recorded (tests/clients/wirespy.py). Used by
tests/clients/test_sdk2_notifications.py.
"""

from __future__ import annotations

import datetime
from typing import Any

from sdk2_driver import main, plain, run_step, typed
from wirespy import record_watch_requests
from zcrmsdk.src.com.zoho.crm.api import ParameterMap
from zcrmsdk.src.com.zoho.crm.api.notification import (
    BodyWrapper,
    DisableNotificationsParam,
    GetNotificationDetailsParam,
    Notification,
    NotificationOperations,
)

NOTIFICATION_KEYS = ("channel_id", "notify_url", "events", "token", "channel_expiry",
                     "resource_uri", "resource_id", "resource_name", "notify_on_related_action",
                     "fields", "deleteevents")
WRITES = ("enable_notifications", "update_notification", "update_notifications",
          "disable_notification")


def members(obj: Any) -> dict[str, Any]:
    """What the SDK parsed into a Notification: values and Python types."""
    return typed({k: getattr(obj, f"get_{k}")() for k in NOTIFICATION_KEYS})


def item(obj: Any) -> dict[str, Any]:
    """One `watch[]` item of an action reply, or a top-level APIException; `details.events`
    is parsed into Notification objects."""
    details = dict(obj.get_details() or {})
    events = details.pop("events", None)
    out = {"class": type(obj).__name__, "status": plain(obj.get_status()),
           "code": plain(obj.get_code()), "message": plain(obj.get_message()),
           "details": typed(details)}
    if events is not None:
        out["events_class"] = sorted({type(e).__name__ for e in events})
        out["events"] = [members(e) if isinstance(e, Notification) else repr(e)
                         for e in events]
    return out


def describe(response: Any) -> dict[str, Any]:
    if response is None:
        return {"response": None}
    obj = response.get_object()
    out: dict[str, Any] = {"status": response.get_status_code(),
                           "class": type(obj).__name__ if obj is not None else None}
    if out["class"] == "ActionWrapper":
        out["watch"] = [item(x) for x in obj.get_watch()]
    elif out["class"] == "APIException":
        out["error"] = item(obj)
    elif out["class"] == "ResponseWrapper":
        out["watch"] = [members(n) for n in obj.get_watch()]
        info = obj.get_info()
        out["info"] = None if info is None else typed({
            "per_page": info.get_per_page(), "count": info.get_count(),
            "page": info.get_page(), "more_records": info.get_more_records()})
    return out


def notification(values: dict[str, Any]) -> Notification:
    n = Notification()
    for key, raw in values.items():
        if key == "channel_expiry":
            raw = datetime.datetime.fromisoformat(raw)
        setter = "set_deleteevents" if key == "_delete_events" else f"set_{key}"
        getattr(n, setter)(raw)
    return n


def run_notify_step(step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    operations = NotificationOperations()
    if op in WRITES:
        wrapper = BodyWrapper()
        wrapper.set_watch([notification(w) for w in step["watch"]])
        return describe(getattr(operations, op)(wrapper))
    if op == "get_notification_details":
        params = ParameterMap()
        for key, raw in step.get("params", {}).items():
            params.add(getattr(GetNotificationDetailsParam, key), raw)
        return describe(operations.get_notification_details(params))
    if op == "disable_notifications":
        params = ParameterMap()
        for channel_id in step["channel_ids"]:
            params.add(DisableNotificationsParam.channel_ids, channel_id)
        return describe(operations.disable_notifications(params))
    return run_step(step)


if __name__ == "__main__":
    record_watch_requests()
    main(run_notify_step)
