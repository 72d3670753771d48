"""azure-ad and gsuite-login: JSON documents of events, or NDJSON; samples per the public docs."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson
import pytest

from logferry.codecs.formats import DecodeContext, FormatOptions, get_format
from logferry.errors import DecodeError
from tests.codecs.conftest import decode_merged, utc_ms

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000

SIGN_IN = {
    "id": "66ea54eb-6301-4ee5-be62-ff5a759b0100",
    "createdDateTime": "2024-01-02T03:04:05Z",
    "userDisplayName": "Alice Example",
    "userPrincipalName": "alice@contoso.com",
    "appDisplayName": "Azure Portal",
    "ipAddress": "203.0.113.7",
    "clientAppUsed": "Browser",
    "status": {"errorCode": 50126, "failureReason": "Invalid username or password."},
}
AUDIT = {
    "id": "Directory_0c1fa93e-3d4c-4a8b-9b1d-2f0e8f4c1a11",
    "category": "UserManagement",
    "correlationId": "da159bfb-54fa-4092-8a38-6e1fa7870e30",
    "result": "success",
    "activityDisplayName": "Add user",
    "activityDateTime": "2024-01-02T03:04:06.1234567Z",
    "loggedByService": "Core Directory",
    "initiatedBy": {"user": {"userPrincipalName": "admin@contoso.com", "ipAddress": None}},
    "targetResources": [{"userPrincipalName": "bob@contoso.com", "type": "User"}],
}
RISK = {
    "id": "6a3b4a1c-0f2d-4b9a-8a3e-2c1d0e9f8a7b",
    "riskEventType": "unfamiliarFeatures",
    "riskLevel": "medium",
    "activity": "signin",
    "activityDateTime": "2024-01-02T02:59:00Z",
    "detectedDateTime": "2024-01-02T03:00:00Z",
    "userPrincipalName": "carol@contoso.com",
}
DIAG_SIGN_IN = {
    "time": "2024-01-02T03:04:07.5522137Z",
    "resourceId": "/tenants/7d2c3c0a-1111-2222-3333-444455556666/providers/Microsoft.aadiam",
    "operationName": "Sign-in activity",
    "operationVersion": "1.0",
    "category": "SignInLogs",
    "resultType": "0",
    "identity": "Dave Example",
    "Level": 4,
    "properties": {"userPrincipalName": "dave@contoso.com", "appDisplayName": "Teams"},
}
DIAG_AUDIT = {
    "time": "2024-01-02T03:04:08Z",
    "resourceId": "/tenants/7d2c3c0a-1111-2222-3333-444455556666/providers/Microsoft.aadiam",
    "operationName": "Add member to group",
    "category": "AuditLogs",
    "level": "Informational",
    "properties": {"initiatedBy": {"user": {"userPrincipalName": "admin@contoso.com"}}},
}


def _ctx(key: str = "exports/entra.json") -> DecodeContext:
    return DecodeContext(key, LAST_MODIFIED)


def test_azure_graph_document_pretty_printed(chunked: Chunker) -> None:
    doc = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
        "value": [SIGN_IN, AUDIT, RISK, {"id": "no-time"}],
    }
    ctx = _ctx()
    out = decode_merged("azure-ad", chunked(json.dumps(doc, indent=2).encode(), 11), ctx)
    assert [orjson.loads(line) for line in out.lines] == doc["value"]
    assert out.timestamps == [
        utc_ms("2024-01-02T03:04:05+00:00"),
        utc_ms("2024-01-02T03:04:06.123+00:00"),
        utc_ms("2024-01-02T03:00:00+00:00"),  # detected, not the activity
        LAST_MODIFIED,
    ]
    assert out.fields == [
        {"user": "alice@contoso.com"},
        {"category": "UserManagement", "operation": "Add user", "user": "admin@contoso.com"},
        {"operation": "unfamiliarFeatures", "user": "carol@contoso.com"},
        {},
    ]
    assert not ctx.counters


def test_azure_diagnostic_records_document_and_lines() -> None:
    records = {"records": [DIAG_SIGN_IN, DIAG_AUDIT]}
    expected_fields = [
        {
            "category": "SignInLogs",
            "operation": "Sign-in activity",
            "user": "dave@contoso.com",
        },
        {
            "category": "AuditLogs",
            "operation": "Add member to group",
            "user": "admin@contoso.com",
            "level": "Informational",
        },
    ]
    expected_ts = [utc_ms("2024-01-02T03:04:07.552+00:00"), utc_ms("2024-01-02T03:04:08+00:00")]
    # Event Hubs style: one document; storage account style (PT1H.json): one record per line.
    as_document = decode_merged("azure-ad", [orjson.dumps(records)], _ctx())
    ndjson = b"".join(orjson.dumps(r) + b"\n" for r in records["records"])
    as_lines = decode_merged("azure-ad", [ndjson], _ctx())
    for out in (as_document, as_lines):
        assert out.fields == expected_fields
        assert out.timestamps == expected_ts
    # Lines are shipped as written, not re-serialized.
    assert as_lines.lines == ndjson.decode().splitlines()


def test_azure_ndjson_bad_lines_are_shipped_and_counted() -> None:
    data = orjson.dumps(SIGN_IN) + b"\n{broken\n[1, 2]\n" + orjson.dumps({"value": [AUDIT, 7]})
    ctx = _ctx()
    out = decode_merged("azure-ad", [data], ctx)
    assert out.lines[1:3] == ["{broken", "[1, 2]"]
    assert out.lines[4] == "7"
    assert out.timestamps[1:3] == [LAST_MODIFIED] * 2
    assert out.timestamps[3] == utc_ms("2024-01-02T03:04:06.123+00:00")
    assert ctx.counters["malformed"] == 3


def test_azure_empty_page_and_invalid_document() -> None:
    empty = b'{\n  "@odata.context": "x",\n  "value": []\n}\n'
    assert decode_merged("azure-ad", [empty], _ctx()).lines == []
    with pytest.raises(DecodeError, match=r"^invalid Azure AD document"):
        decode_merged("azure-ad", [b'{\n  "value": [\n'], _ctx())


ACTIVITY = {
    "kind": "admin#reports#activity",
    "id": {
        "time": "2024-01-02T03:04:05.678Z",
        "uniqueQualifier": "-1234567890123456789",
        "applicationName": "login",
        "customerId": "C01abcdef",
    },
    "etag": '"qmA4zVn6ZTGgGf3mG3JZzJ-E0fY/abc"',
    "actor": {"email": "alice@example.com", "profileId": "114356893453278945632"},
    "ipAddress": "203.0.113.7",
    "events": [
        {
            "type": "login",
            "name": "login_success",
            "parameters": [
                {"name": "login_type", "value": "google_password"},
                {"name": "is_suspicious", "boolValue": False},
            ],
        }
    ],
}
FAILURE = {
    "kind": "admin#reports#activity",
    "id": {"time": "2024-01-02T03:05:00.000Z", "applicationName": "login"},
    "actor": {"email": "bob@example.com"},
    "ipAddress": "198.51.100.2",
    "events": [
        {"type": "login", "name": "login_failure"},
        {"type": "login", "name": "login_challenge"},
    ],
}


def test_gsuite_page_document(chunked: Chunker) -> None:
    page = {
        "kind": "admin#reports#activities",
        "etag": '"abc"',
        "items": [ACTIVITY, FAILURE, {"kind": "admin#reports#activity", "id": {}}],
        "nextPageToken": "A:1704164705678000:-1234567890123456789:login:C01abcdef",
    }
    ctx = _ctx("reports/login.json")
    out = decode_merged("gsuite-login", chunked(json.dumps(page, indent=2).encode(), 13), ctx)
    assert [orjson.loads(line) for line in out.lines] == page["items"]
    assert out.timestamps == [
        utc_ms("2024-01-02T03:04:05.678+00:00"),
        utc_ms("2024-01-02T03:05:00+00:00"),
        LAST_MODIFIED,
    ]
    assert out.fields == [
        {
            "application": "login",
            "user": "alice@example.com",
            "event": "login_success",
            "ip": "203.0.113.7",
        },
        {
            "application": "login",
            "user": "bob@example.com",
            "event": "login_failure,login_challenge",
            "ip": "198.51.100.2",
        },
        {},
    ]
    assert not ctx.counters


def test_gsuite_ndjson_of_items_and_pages() -> None:
    empty_page = {"kind": "admin#reports#activities", "etag": '"e"'}
    data = b"\n".join(
        [
            orjson.dumps(ACTIVITY),
            orjson.dumps(empty_page),  # a page with no activities ships nothing
            orjson.dumps({"kind": "admin#reports#activities", "items": [FAILURE]}),
            b"not json",
        ]
    )
    ctx = _ctx("reports/login.ndjson")
    out = decode_merged("gsuite-login", [data], ctx)
    assert out.lines[0] == orjson.dumps(ACTIVITY).decode()
    assert orjson.loads(out.lines[1]) == FAILURE
    assert out.lines[2] == "not json"
    assert out.timestamps == [
        utc_ms("2024-01-02T03:04:05.678+00:00"),
        utc_ms("2024-01-02T03:05:00+00:00"),
        LAST_MODIFIED,
    ]
    assert ctx.counters["malformed"] == 1


def test_many_events_come_in_bounded_chunks() -> None:
    page = {"kind": "admin#reports#activities", "items": [ACTIVITY] * 12_000}
    # The one-line page is several MiB: over the default line cap, so the cap is raised.
    ctx = DecodeContext("exports/entra.json", LAST_MODIFIED, FormatOptions(max_line_bytes=64 << 20))
    for data in (orjson.dumps(page), json.dumps(page, indent=1).encode()):
        chunks = list(get_format("gsuite-login").decode([data], ctx))
        assert [len(c) for c in chunks] == [5000, 5000, 2000]
