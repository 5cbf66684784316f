"""What an agent is sent: every byte of a tool's schema and answer lands in a model's context window, in
every session, so both are published lean and compact here, in one place.

- Schemas (``lean_schema``): no titles (the property names say them); a field whose default is null
  published as its type alone (a request may still send null; an answer never does); an output schema
  spells out the fields every answer has, with their types and no descriptions: the rest appear only
  when set (or asked for), and docs/tools.md explains every field.
- Answers (``dump_answer``): an optional field that is empty (null, false, an empty list or object) is
  left out; the text content is the structured content as compact JSON, so both say the same thing.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

NULL = {"type": "null"}


def lean_schema(schema: dict[str, Any], *, output: bool = False) -> dict[str, Any]:
    """``schema`` without what costs bytes and tells a model nothing; an ``output`` schema spells out only
    the fields every answer has."""
    lean = _lean(schema, output)
    # A model's own docstring speaks to the code; the tool's description speaks to the agent.
    for model in [lean, *lean.get("$defs", {}).values()]:
        model.pop("description", None)
    _drop_unreferenced(lean)
    return lean


def _drop_unreferenced(schema: dict[str, Any]) -> None:
    """Definitions no field refers to any more (those of the optional fields an output schema leaves out)."""
    definitions = schema.get("$defs", {})
    while True:
        others = {key: value for key, value in schema.items() if key != "$defs"}
        text = json.dumps([others, definitions])
        unused = [name for name in definitions if f'"#/$defs/{name}"' not in text]
        if not unused:
            break
        for name in unused:
            del definitions[name]
    if "$defs" in schema and not definitions:
        del schema["$defs"]


def _lean(node: Any, output: bool) -> Any:
    if isinstance(node, list):
        return [_lean(item, output) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    required = node.get("required", [])
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if (key == "description" and isinstance(value, str) and output) or (
            key == "additionalProperties" and value is True  # what JSON Schema assumes anyway
        ):
            continue
        if key == "properties" and isinstance(
            value, dict
        ):  # names, not keywords: keep every one (of an output, every one required)
            out[key] = {name: _lean(schema, output) for name, schema in value.items() if name in required or not output}
        elif key == "$defs" and isinstance(value, dict):
            out[key] = {name: _lean(schema, output) for name, schema in value.items()}
        else:
            out[key] = _lean(value, output)
    if "default" in out and out["default"] is None:
        # Null is the default: never sent in an answer (``dump_answer``), "not given" in a request; the
        # field is published as its type alone.
        del out["default"]
        options = out.get("anyOf")
        if isinstance(options, list) and NULL in options:
            rest = [option for option in options if option != NULL]
            del out["anyOf"]
            out = {**rest[0], **out} if len(rest) == 1 else {"anyOf": rest, **out}
    return out


def dump_answer(answer: BaseModel) -> dict[str, Any]:
    """The structured content: the answer's JSON without the optional fields that are empty (null, false,
    [] or {}, and so at their default); a required field is always there, ``"hits": []`` included."""
    data = answer.model_dump(mode="json", by_alias=True)
    _prune(answer, data)
    return data


def _prune(model: BaseModel, data: dict[str, Any]) -> None:
    for name, field in type(model).model_fields.items():
        key = field.serialization_alias or field.alias or name
        if key not in data:
            continue
        value = getattr(model, name)
        if not field.is_required() and _empty(data[key]) and _empty(field.get_default(call_default_factory=True)):
            del data[key]
        elif isinstance(value, BaseModel):
            _prune(value, data[key])
        elif isinstance(value, list | tuple):
            for item, dumped in zip(value, data[key], strict=True):
                if isinstance(item, BaseModel):
                    _prune(item, dumped)
        elif isinstance(value, dict):
            for item_key, item in value.items():
                if isinstance(item, BaseModel):
                    _prune(item, data[key][str(item_key)])


def _empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, list | dict) and not value)


def tool_result(answer: BaseModel) -> CallToolResult:
    """The tool's result: the structured content, and the same as compact JSON text."""
    structured = dump_answer(answer)
    text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
