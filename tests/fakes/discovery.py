"""Check requests against the discovery documents google-api-python-client ships.

The fake servers route and validate every request with the same documents the real
client was built from: an unknown path or method is a 404, and a body with an unknown
field, a wrong type, a value outside an enum, an output-only field or a missing
"Required." field is a 400, as the real service would answer.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import googleapiclient

DOCS = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents")
STANDARD_QUERY = {"alt", "prettyPrint", "fields", "$.xgafv", "key", "quotaUser", "access_token", "uploadType",
                  "upload_protocol", "callback", "oauth_token"}


@dataclass
class Route:
    id: str
    http_method: str
    regex: re.Pattern[str]
    method: dict[str, Any]


class Discovery:
    """Routes and schemas of one API; parsed once per process (read-only afterwards)."""

    _cache: dict[tuple[str, str], "Discovery"] = {}

    def __new__(cls, api: str, version: str) -> "Discovery":
        key = (api, version)
        if key not in cls._cache:
            self = super().__new__(cls)
            with open(os.path.join(DOCS, f"{api}.{version}.json"), encoding="utf-8") as f:
                self.doc = json.load(f)
            self.schemas = self.doc["schemas"]
            self.routes = []
            self._collect(self.doc)
            cls._cache[key] = self
        return cls._cache[key]

    doc: dict[str, Any]
    schemas: dict[str, Any]
    routes: list[Route]

    def _collect(self, node: dict[str, Any]) -> None:
        for m in (node.get("methods") or {}).values():
            flat = m.get("flatPath") or m["path"]
            pattern = re.sub(r"\{[^}]+\}", "[^/:]+", re.escape(flat).replace(r"\{", "{").replace(r"\}", "}"))
            self.routes.append(Route(m["id"], m["httpMethod"], re.compile("^/" + pattern + "$"), m))
        for r in (node.get("resources") or {}).values():
            self._collect(r)

    def route(self, http_method: str, path: str) -> Route | None:
        for r in self.routes:
            if r.http_method == http_method and r.regex.match(path):
                return r
        return None

    # ---- validation ---------------------------------------------------------------------
    def check_query(self, route: Route, query: dict[str, list[str]]) -> list[str]:
        params = route.method.get("parameters", {})
        errors = []
        for k in query:
            if k in STANDARD_QUERY:
                continue
            spec = params.get(k)
            if spec is None or spec.get("location") != "query":
                errors.append(f"Invalid parameter: unknown query parameter {k!r}")
        return errors

    def check_body(self, route: Route, body: Any) -> list[str]:
        req = route.method.get("request")
        if req is None:
            return [] if body in (None, {}) else ["this method takes no request body"]
        return self._check(self.schemas[req["$ref"]], body, "")

    def _check(self, schema: dict[str, Any], value: Any, where: str) -> list[str]:
        if "$ref" in schema:
            return self._check(self.schemas[schema["$ref"]], value, where)
        t = schema.get("type")
        here = where or "(body)"
        if t == "object":
            if not isinstance(value, dict):
                return [f"Invalid value at '{here}': expected an object"]
            errors: list[str] = []
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            if props is None and extra is None:
                return []        # google.protobuf.Struct-like: anything goes
            for k, v in value.items():
                sub = f"{where}.{k}" if where else k
                if props is not None and k in props:
                    ps = props[k]
                    if str(ps.get("description", "")).startswith("Output only."):
                        errors.append(f"Invalid JSON payload: '{sub}' is output only")
                    if ps.get("type") == "any" or ps.get("$ref") is None and ps.get("type") is None:
                        continue
                    errors += self._check(ps, v, sub)
                elif extra is not None:
                    errors += self._check(extra, v, sub)
                else:
                    errors.append(f'Invalid JSON payload received. Unknown name "{k}" at \'{here}\': '
                                  'Cannot find field.')
            for k, ps in (props or {}).items():
                if str(ps.get("description", "")).startswith("Required.") and k not in value:
                    errors.append(f"Required field '{where + '.' if where else ''}{k}' is missing")
            return errors
        if t == "array":
            if not isinstance(value, list):
                return [f"Invalid value at '{here}': expected a list"]
            return [e for i, v in enumerate(value) for e in self._check(schema.get("items", {}), v, f"{where}[{i}]")]
        if t == "string":
            fmt = schema.get("format")
            if fmt in ("int64", "uint64"):
                if isinstance(value, bool) or not (isinstance(value, int) or
                                                   (isinstance(value, str) and re.fullmatch(r"-?\d+", value))):
                    return [f"Invalid value at '{here}' ({fmt}): {value!r}"]
                return []
            if not isinstance(value, str):
                return [f"Invalid value at '{here}' (TYPE_STRING), {value!r}"]
            if "enum" in schema and value not in schema["enum"]:
                return [f"Invalid value at '{here}': {value!r} is not one of {schema['enum']}"]
            if fmt == "byte":
                import base64
                try:
                    base64.b64decode(value.replace("-", "+").replace("_", "/") + "==")
                except ValueError:
                    return [f"Invalid value at '{here}' (TYPE_BYTES): not base64"]
            return []
        if t == "integer":
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
                return [f"Invalid value at '{here}' (TYPE_INT32), {value!r}"]
            return []
        if t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return [f"Invalid value at '{here}' (TYPE_DOUBLE), {value!r}"]
            return []
        if t == "boolean":
            if not isinstance(value, bool):
                return [f"Invalid value at '{here}' (TYPE_BOOL), {value!r}"]
            return []
        return []
