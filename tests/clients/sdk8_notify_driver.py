"""Drive the v8 SDK's `NotificationsOperations` (zohocrmsdk8-0), unmodified, in a child process.

The job and the report are those of sdk8_driver.py, whose record steps (`create`, `update`,
`delete`, ...) also work here, so one session can change channels and records in turn. The
notification steps are named after the SDK methods:

    {"op": "enable_notifications" | "update_notification" | "update_notifications"
           | "disable_notification", "watch": [{"channel_id": "...", "events": [...], ...}]}
    {"op": "get_notifications", "params": {"channel_id": 1, "module": "Leads", ...}}
    {"op": "delete_notification", "channel_ids": ["1", "2"]}

Keys of a `watch` item are set with the Notification setter of that name (`_delete_events`
with `set_delete_events`); `channel_expiry` is an ISO 8601 string, given to the SDK as a
datetime. The body of every watch request is recorded (tests/clients/wirespy.py). Used by
tests/clients/test_sdk8_notifications.py.
"""

from __future__ import annotations

import datetime
from typing import Any

from sdk8_driver import main, plain, run_step, typed
from wirespy import record_watch_requests
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.notifications import (
    BodyWrapper,
    DeleteNotificationParam,
    Event,
    GetNotificationsParam,
    Notification,
    NotificationsOperations,
)

EVENT_KEYS = ("channel_expiry", "resource_uri", "resource_id", "resource_name", "channel_id",
              "notification_condition")
NOTIFICATION_KEYS = ("channel_id", "notify_url", "events", "token", "channel_expiry",
                     "resource_uri", "resource_id", "resource_name",
                     "return_affected_field_values", "notify_on_related_action", "fields",
                     "notification_condition", "delete_events")
WRITES = ("enable_notifications", "update_notification", "update_notifications",
          "disable_notification")


def members(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """What the SDK parsed into `obj` (an Event or a Notification): values and Python types."""
    return typed({k: getattr(obj, f"get_{k}")() for k in keys})


def item(obj: Any) -> dict[str, Any]:
    """One `watch[]` item of an action reply (SuccessResponse / APIException), or a top-level
    APIException; `details.events` is a list of Event objects."""
    details = dict(obj.get_details() or {})
    events = details.pop("events", None)
    out = {"class": type(obj).__name__, "status": plain(obj.get_status()),
           "code": plain(obj.get_code()), "message": plain(obj.get_message()),
           "details": typed(details)}
    if events is not None:
        out["events_class"] = sorted({type(e).__name__ for e in events})
        out["events"] = [members(e, EVENT_KEYS) if isinstance(e, Event) else repr(e)
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
        out["watch"] = [members(n, NOTIFICATION_KEYS) for n in obj.get_watch()]
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
        getattr(n, "set_" + key.lstrip("_"))(raw)
    return n


def run_notify_step(step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    operations = NotificationsOperations()
    if op in WRITES:
        wrapper = BodyWrapper()
        wrapper.set_watch([notification(w) for w in step["watch"]])
        return describe(getattr(operations, op)(wrapper))
    if op == "get_notifications":
        params = ParameterMap()
        for key, raw in step.get("params", {}).items():
            params.add(getattr(GetNotificationsParam, key), raw)
        return describe(operations.get_notifications(params))
    if op == "delete_notification":
        params = ParameterMap()
        for channel_id in step["channel_ids"]:  # the SDK joins repeated values with ","
            params.add(DeleteNotificationParam.channel_ids, channel_id)
        return describe(operations.delete_notification(params))
    return run_step(step)


if __name__ == "__main__":
    record_watch_requests()
    main(run_notify_step)
