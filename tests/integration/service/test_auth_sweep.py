"""The auth sweep, built from the live OpenAPI: every operation that declares the X-API-Key scheme,
asked with no key, an unknown key and keys of every other scope, answers 401 or 403: never 2xx,
never 5xx, and before it looks at the body (a malformed body gets 401, not 422). Exactly one scope
opens each operation."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.integration.service.support import KEYS, Live

SINGLE_SCOPE_KEYS = {scopes[0]: key for key, scopes in KEYS.items() if len(scopes) == 1}


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    ]


def _url(path: str, operation: dict[str, Any]) -> str:
    """The path with every path parameter filled from its example (or a plain id)."""
    examples = {
        p["name"]: (p["schema"].get("examples") or p.get("examples") or ["x1"])[0]
        for p in operation.get("parameters", [])
        if p["in"] == "path"
    }
    if isinstance(examples, dict):
        examples = {k: (v["value"] if isinstance(v, dict) else v) for k, v in examples.items()}
    return re.sub(r"\{(\w+)\}", lambda m: str(examples.get(m.group(1), "x1")), path)


def test_every_operation_refuses_a_missing_unknown_or_wrong_scope_key(live: Live) -> None:
    openapi = httpx.get(f"{live.url}/openapi.json").json()
    operations = _operations(openapi)
    assert len(operations) >= 9  # recommendations, similar, shelves, baskets, recipes ×2, recaps, events, reload
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for method, path, operation in operations:
            url = _url(path, operation)
            body = b"{not json" if "requestBody" in operation else None
            headers = {"Content-Type": "application/json"} if body else {}
            for key, expected in ((None, 401), ("not-a-key", 401)):
                sent = {**headers, **({"X-API-Key": key} if key else {})}
                r = client.request(method, url, content=body, headers=sent)
                assert r.status_code == expected, (method, path, key, r.status_code, r.text[:200])
                assert r.json()["request_id"] and "not-a-key" not in r.text
            opened, refusals = [], []
            for scope, key in SINGLE_SCOPE_KEYS.items():
                r = client.request(method, url, content=body, headers={**headers, "X-API-Key": key})
                assert r.status_code < 500, (method, path, scope, r.text[:200])
                if r.status_code == 403:
                    refusals.append(r.json()["detail"])
                else:
                    assert r.status_code != 401
                    opened.append(scope)
            assert len(opened) == 1, (method, path, opened)
            # Every other key hears the scope it lacks: the one that opened the route.
            assert refusals and all(f"lacks the '{opened[0]}' scope" in d for d in refusals), (method, path, refusals)
