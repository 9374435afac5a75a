"""A minimal, valid instance of a JSON schema: required fields only.

Used by the Anthropic fake to answer a tool call without a script. Handles what pydantic and
hand-written tool schemas use: $ref/$defs, anyOf/oneOf/allOf, nullable type lists, enum/const,
string formats that a free sentence would break (date, date-time, email, uri).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

MAX_DEPTH = 12


def sample_from_schema(schema: dict[str, Any], text: str) -> Any:
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _sample(schema, defs, text, 0)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and "/" in ref:
        return defs.get(ref.rsplit("/", 1)[-1], {})
    return schema


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        return non_null[0] if non_null else "null"
    if kind is None and "properties" in schema:
        return "object"
    return kind


def _string(schema: dict[str, Any], text: str) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return date.today().isoformat()
    if fmt == "date-time":
        return datetime.now(UTC).replace(microsecond=0).isoformat()
    if fmt == "email":
        return "paciente@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com"
    max_len = schema.get("maxLength")
    return text[:max_len] if isinstance(max_len, int) else text


def _sample(schema: Any, defs: dict[str, Any], text: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    schema = _resolve(schema, defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key, []) if _type_of(_resolve(o, defs)) != "null"]
        if options:
            return _sample(options[0], defs, text, depth + 1)
    if schema.get("allOf"):
        return _sample(schema["allOf"][0], defs, text, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _sample(props.get(k, {}), defs, text, depth + 1)
                for k in schema.get("required", [])}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [_sample(schema.get("items", {}), defs, text, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, text)
    if kind in ("integer", "number"):
        value = schema.get("minimum", 0)
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            value = schema["exclusiveMinimum"] + 1
        value = max(0, value) if isinstance(value, int | float) else 0
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None
