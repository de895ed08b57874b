"""The API's docs work without internet and document every request body in full."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient


def _client(tmp_path: Any) -> TestClient:
    from service.app import create_app
    from service.config import load_service_settings

    return TestClient(create_app(load_service_settings(home=str(tmp_path), auth="disabled")))


def test_docs_pages_load_their_assets_from_the_service(tmp_path: Any) -> None:
    client = _client(tmp_path)
    for page, assets in (
        ("/docs", ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css")),
        ("/redoc", ("/docs-assets/redoc.standalone.js",)),
    ):
        html = client.get(page).text
        assert "http://" not in html and "https://" not in html, page  # no CDN, no web font
        for asset in assets:
            assert asset in html and client.get(asset).status_code == 200, asset


def test_every_request_body_is_typed_in_openapi(tmp_path: Any) -> None:
    spec = _client(tmp_path).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def untyped(schema: dict[str, Any], where: str) -> list[str]:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return untyped(schemas[name], name) if name not in seen else []
        seen.add(where)
        found = [] if schema.get("type") or schema.get("anyOf") or schema.get("enum") else [where]
        for key, value in schema.get("properties", {}).items():
            found += untyped(value, f"{where}.{key}")
        if isinstance(schema.get("items"), dict):
            found += untyped(schema["items"], f"{where}[]")
        for option in schema.get("anyOf", []):
            found += untyped(option, f"{where}|")
        return found

    seen: set[str] = set()
    bodies = [
        (path, op["requestBody"]["content"]["application/json"]["schema"])
        for path, ops in spec["paths"].items()
        for op in ops.values()
        if "requestBody" in op
    ]
    assert {path for path, _ in bodies} == {"/v1/baskets/complete", "/v1/events"}
    for path, schema in bodies:
        assert untyped(schema, path) == [], path
    event = schemas["EventsRequest"]["properties"]["events"]["items"]
    assert event["required"] == ["event_id", "user_id", "item_id", "timestamp"]
