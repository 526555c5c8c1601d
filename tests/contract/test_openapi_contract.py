"""The public HTTP contract: the current app's OpenAPI document may add, never take away.

``breaking_changes(baseline, current)`` lists every way the current document breaks a client
written against tests/contract/openapi_baseline.json (today's document, commit d040904):

- an operation (path + method) is gone;
- a parameter (name + in; the multipart/form fields of the request body count as parameters "in"
  body) is gone, became required, no longer accepts a JSON-schema type it accepted, or lost enum
  values; a NEW parameter that is required is a break too (old clients do not send it);
- a documented response (status, content type) is gone;
- a field of a response body is gone or changed type. Fields are found by walking the schema from
  the operation through ``$ref`` (components/schemas), ``properties``, ``items``,
  ``additionalProperties`` and ``anyOf``/``oneOf``/``allOf``, and named by their path
  (``results[].scientific_name``), not by the component's name, so a renamed or split schema that
  keeps its fields is no break. The error bodies (400, 404, 409 ...) are walked the same way.
  "Changed type" is any change of the field's set of JSON-schema types, null included
  (nullable -> non-nullable, and non-nullable -> nullable), or enum values removed.

Additions are fine: new paths, methods, optional parameters, responses, fields, enum values.
Descriptions, examples, titles, bounds and component names are not compared.

Regenerate the baseline deliberately: ``.venv/bin/python -m tests.contract.refresh openapi``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.contract.baselines import OPENAPI_BASELINE, current_openapi

Spec = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class Shape:
    """What a schema allows at one place: its JSON-schema types (``null`` included) and, when every
    typed branch is an enum, the allowed values (``None``: unrestricted)."""

    types: set[str] = field(default_factory=set)
    enum: set[str] | None = None
    free: bool = False  # a typed branch without an enum: any value of its type

    def values(self) -> set[str] | None:
        return None if self.free else self.enum


def resolve(spec: Spec, schema: Any) -> tuple[dict[str, Any], str | None]:
    """The schema, its ``$ref`` followed (``#/components/...``), and the last reference followed."""
    ref = None
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return (schema if isinstance(schema, dict) else {}), ref


def _add(shape: Shape, schema: dict[str, Any]) -> None:
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or ())
    if schema.get("nullable"):  # OpenAPI 3.0 spelling
        types.add("null")
    shape.types |= types
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        shape.enum = (shape.enum or set()) | {json.dumps(v, sort_keys=True) for v in values}
    elif types - {"null"}:
        shape.free = True


def fields(spec: Spec, schema: Any, path: str = "", seen: frozenset[str] = frozenset()) -> dict[str, Shape]:
    """Every place in ``schema`` by path ("" is the body itself), with its shape."""
    found: dict[str, Shape] = {}

    def walk(schema: Any, path: str, seen: frozenset[str]) -> None:
        schema, ref = resolve(spec, schema)
        _add(found.setdefault(path, Shape()), schema)
        if ref is not None:
            if ref in seen:
                return  # a recursive schema: its fields are walked once
            seen = seen | {ref}
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in schema.get(key, ()):
                walk(branch, path, seen)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{path}.{name}" if path else name, seen)
        if "items" in schema:
            walk(schema["items"], f"{path}[]", seen)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}{{}}", seen)

    walk(schema, path, seen)
    return found


def operations(spec: Spec) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def parameters(spec: Spec, operation: dict[str, Any]) -> dict[tuple[str, str], tuple[bool, Shape]]:
    """(name, in) -> (required, shape), the request body's fields as ``in`` "body <content type>"."""
    found = {}
    for parameter in operation.get("parameters", ()):
        parameter, _ = resolve(spec, parameter)
        where = parameter["in"]
        name = parameter["name"].lower() if where == "header" else parameter["name"]
        found[name, where] = (bool(parameter.get("required")), fields(spec, parameter.get("schema", {}))[""])
    body, _ = resolve(spec, operation.get("requestBody", {}))
    for content_type, media in body.get("content", {}).items():
        schema, _ = resolve(spec, media.get("schema", {}))
        required = set(schema.get("required", ())) if body.get("required") else set()
        for name, sub in schema.get("properties", {}).items():
            found[name, f"body {content_type}"] = (name in required, fields(spec, sub)[""])
    return found


def responses(spec: Spec, operation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Shape]]:
    """(status, content type) -> the fields of its body (empty when it documents no schema)."""
    found = {}
    for status, response in operation.get("responses", {}).items():
        response, _ = resolve(spec, response)
        for content_type, media in (response.get("content") or {"(no content)": {}}).items():
            found[str(status), content_type] = fields(spec, media["schema"]) if "schema" in media else {}
    return found


def _types(types: set[str]) -> str:
    return "|".join(sorted(types)) or "any"


def _accepts(new: set[str], old_type: str) -> bool:
    return not new or old_type in new or (old_type == "integer" and "number" in new)


def _lost_values(old: Shape, new: Shape) -> set[str]:
    before, after = old.values(), new.values()
    return set() if before is None or after is None else before - after


def parameter_breaks(old: Spec, old_op: dict[str, Any], new: Spec, new_op: dict[str, Any]) -> list[str]:
    breaks = []
    before, after = parameters(old, old_op), parameters(new, new_op)
    for (name, where), (required, shape) in before.items():
        label = f"parameter {name!r} ({where})"
        if (name, where) not in after:
            breaks.append(f"{label} is gone")
            continue
        now_required, now = after[name, where]
        if now_required and not required:
            breaks.append(f"{label} became required")
        refused = {t for t in shape.types - {"null"} if not _accepts(now.types, t)}
        if refused:
            change = f"{_types(shape.types)} -> {_types(now.types)}"
            breaks.append(f"{label} no longer accepts {_types(refused)} (type {change})")
        if lost := _lost_values(shape, now):
            breaks.append(f"{label} lost enum values {sorted(lost)}")
    for (name, where), (required, _) in after.items():
        if required and (name, where) not in before:
            breaks.append(f"new required parameter {name!r} ({where})")
    return breaks


def response_breaks(old: Spec, old_op: dict[str, Any], new: Spec, new_op: dict[str, Any]) -> list[str]:
    breaks = []
    before, after = responses(old, old_op), responses(new, new_op)
    for (status, content_type), old_fields in before.items():
        label = f"response {status} {content_type}"
        if (status, content_type) not in after:
            breaks.append(f"{label} is gone")
            continue
        new_fields = after[status, content_type]
        for path, shape in old_fields.items():
            where = f"{label}: field {path!r}" if path else f"{label}: the body"
            if path not in new_fields:
                breaks.append(f"{where} is gone")
                continue
            now = new_fields[path]
            if shape.types and shape.types != now.types:
                change = "type"
                if now.types == shape.types | {"null"}:
                    change = "non-nullable -> nullable"
                elif shape.types == now.types | {"null"}:
                    change = "nullable -> non-nullable"
                breaks.append(f"{where} changed {change}: {_types(shape.types)} -> {_types(now.types)}")
            if lost := _lost_values(shape, now):
                breaks.append(f"{where} lost enum values {sorted(lost)}")
    return breaks


def breaking_changes(old: Spec, new: Spec) -> list[str]:
    """Every way ``new`` breaks a client of ``old`` (the module's docstring says what counts)."""
    breaks = []
    new_paths = new.get("paths", {})
    for path, method, old_op in operations(old):
        where = f"{method.upper()} {path}"
        new_op = new_paths.get(path, {}).get(method)
        if new_op is None:
            breaks.append(f"{where}: the operation is gone")
            continue
        breaks += [f"{where}: {b}" for b in parameter_breaks(old, old_op, new, new_op)]
        breaks += [f"{where}: {b}" for b in response_breaks(old, old_op, new, new_op)]
    return breaks


# --- the contract ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline() -> Spec:
    return json.loads(OPENAPI_BASELINE.read_text(encoding="utf-8"))


def test_the_current_app_keeps_every_operation_parameter_and_field_of_the_baseline(baseline):
    breaks = breaking_changes(baseline, current_openapi())
    assert not breaks, (
        f"the OpenAPI document breaks {len(breaks)} thing(s) of {OPENAPI_BASELINE.name} (today's "
        "public API); restore them, or, if the break is intended, refresh the baseline with "
        "`python -m tests.contract.refresh openapi` and say so:\n  " + "\n  ".join(breaks)
    )


def test_the_baseline_is_walked_down_to_its_leaves(baseline):
    """The comparison is not vacuous: the walk reaches nested fields through $ref, anyOf and items,
    the error bodies and the multipart fields."""
    operation = baseline["paths"]["/bird_url"]["post"]
    answer = responses(baseline, operation)
    ok = answer["200", "application/json"]
    assert ok["results[].scientific_name"].types == {"string"}
    assert ok["results[].score"].types == {"number"}
    assert ok["no_match_reason"].types == {"string", "null"}
    assert {'"background"', '"low_confidence"', '"filtered_out"'} <= (ok["no_match_reason"].values() or set())
    assert "error.code" in answer["409", "application/json"]
    params = parameters(baseline, operation)
    assert params["top_k", "query"][0] is False and params["top_k", "query"][1].types == {"integer", "null"}
    assert ("image", "body multipart/form-data") in params
    identify = responses(baseline, baseline["paths"]["/v1/identify"]["post"])["200", "application/json"]
    assert "models[].scope" in identify and "results[].scientific_name" in identify
    assert len(list(operations(baseline))) >= 22


# --- the comparator itself, on tiny documents ---------------------------------------------------


def tiny() -> Spec:
    """One operation: a query parameter, a multipart field, a body with a nested list through
    $ref and a nullable enum, an error body, and a recursive schema."""
    return {
        "openapi": "3.1.0",
        "paths": {
            "/things": {
                "post": {
                    "parameters": [
                        {"name": "top_k", "in": "query", "required": False,
                         "schema": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
                        {"name": "mode", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": ["a", "b"]}},
                    ],
                    "requestBody": {"content": {"multipart/form-data": {
                        "schema": {"$ref": "#/components/schemas/Body"}}}},
                    "responses": {
                        "200": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Answer"}}}},
                        "404": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Body": {"type": "object", "properties": {"image": {"type": "string"}}},
                "Answer": {
                    "type": "object",
                    "properties": {
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                        "reason": {"anyOf": [{"type": "string", "enum": ["x", "y"]}, {"type": "null"}]},
                        "tree": {"$ref": "#/components/schemas/Node"},
                    },
                },
                "Item": {"type": "object", "properties": {"name": {"type": "string"},
                                                          "score": {"type": "number"}}},
                "Node": {"type": "object", "properties": {
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}}}}},
            }
        },
    }  # fmt: skip


OK = "POST /things: response 200 application/json"  # how the breaks of its 200 answer begin


def changed(edit) -> list[str]:
    new = copy.deepcopy(tiny())
    edit(new)
    return breaking_changes(tiny(), new)


def schema(spec: Spec, name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]


def operation(spec: Spec) -> dict[str, Any]:
    return spec["paths"]["/things"]["post"]


def test_the_same_document_breaks_nothing():
    assert breaking_changes(tiny(), tiny()) == []
    # A recursive schema is walked once round its cycle.
    assert set(fields(tiny(), {"$ref": "#/components/schemas/Node"})) == {"", "children", "children[]"}


def test_a_removed_response_field_breaks():
    breaks = changed(lambda s: schema(s, "Item")["properties"].pop("score"))
    assert breaks == [f"{OK}: field 'results[].score' is gone"]


def test_a_removed_error_body_field_breaks():
    breaks = changed(lambda s: schema(s, "Error")["properties"]["error"]["properties"].pop("code"))
    assert breaks == ["POST /things: response 404 application/json: field 'error.code' is gone"]


def test_a_changed_field_type_breaks():
    breaks = changed(lambda s: schema(s, "Item")["properties"]["score"].update(type="string"))
    assert breaks == [f"{OK}: field 'results[].score' changed type: number -> string"]


def test_nullable_to_non_nullable_breaks_and_so_does_the_reverse():
    reason = {"type": "string", "enum": ["x", "y"]}
    breaks = changed(lambda s: schema(s, "Answer")["properties"].update(reason=reason))
    assert breaks == [f"{OK}: field 'reason' changed nullable -> non-nullable: null|string -> string"]
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    breaks = changed(lambda s: schema(s, "Item")["properties"].update(name=nullable))
    assert breaks == [f"{OK}: field 'results[].name' changed non-nullable -> nullable: string -> null|string"]


def test_removed_enum_values_break_and_added_ones_do_not():
    def narrow(s: Spec) -> None:
        schema(s, "Answer")["properties"]["reason"]["anyOf"][0]["enum"] = ["x"]
        operation(s)["parameters"][1]["schema"]["enum"] = ["a"]

    assert changed(narrow) == [
        "POST /things: parameter 'mode' (query) lost enum values ['\"b\"']",
        f"{OK}: field 'reason' lost enum values ['\"y\"']",
    ]

    def widen(s: Spec) -> None:
        schema(s, "Answer")["properties"]["reason"]["anyOf"][0]["enum"].append("z")
        operation(s)["parameters"][1]["schema"]["enum"].append("c")

    assert changed(widen) == []


def test_additions_break_nothing():
    def add(s: Spec) -> None:
        schema(s, "Item")["properties"]["rank"] = {"type": "integer"}
        schema(s, "Answer")["properties"]["extra"] = {"$ref": "#/components/schemas/Item"}
        operation(s)["parameters"].append({"name": "lat", "in": "query", "schema": {"type": "number"}})
        operation(s)["responses"]["409"] = operation(s)["responses"]["404"]
        s["paths"]["/things"]["get"] = {"responses": {}}
        s["paths"]["/more"] = {"get": {"responses": {}}}

    assert changed(add) == []


def test_a_renamed_component_with_the_same_fields_breaks_nothing():
    def rename(s: Spec) -> None:
        s["components"]["schemas"]["ItemV2"] = s["components"]["schemas"].pop("Item")
        schema(s, "Answer")["properties"]["results"]["items"]["$ref"] = "#/components/schemas/ItemV2"

    assert changed(rename) == []


def test_gone_operations_parameters_and_responses_break():
    assert changed(lambda s: s["paths"].pop("/things")) == ["POST /things: the operation is gone"]
    assert changed(lambda s: operation(s)["parameters"].pop(0)) == [
        "POST /things: parameter 'top_k' (query) is gone"
    ]
    assert changed(lambda s: operation(s)["responses"].pop("404")) == [
        "POST /things: response 404 application/json is gone"
    ]
    assert changed(lambda s: schema(s, "Body")["properties"].pop("image")) == [
        "POST /things: parameter 'image' (body multipart/form-data) is gone"
    ]


def test_parameters_that_become_required_or_change_type_break():
    def require(s: Spec) -> None:
        operation(s)["parameters"][0]["required"] = True
        operation(s)["parameters"].append({"name": "key", "in": "header", "required": True, "schema": {}})

    assert changed(require) == [
        "POST /things: parameter 'top_k' (query) became required",
        "POST /things: new required parameter 'key' (header)",
    ]
    retype = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert changed(lambda s: operation(s)["parameters"][0].update(schema=retype)) == [
        "POST /things: parameter 'top_k' (query) no longer accepts integer (type integer|null -> null|string)"
    ]
    # Accepting more is no break: an integer parameter that now takes any number.
    widened = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert changed(lambda s: operation(s)["parameters"][0].update(schema=widened)) == []
