"""Two OpenAI Agents SDK agents sharing one mimir-mcp over streamable HTTP: a researcher remembers
findings under its agent name with tags, a writer searches them and cites their ids.

    pip install -e '.[examples]'
    python examples/openai_agents_team.py                    # starts its own server on a temporary store
    python examples/openai_agents_team.py --url http://127.0.0.1:8000/mcp

Both agents reach the server through the SDK's own MCP client (`agents.mcp.MCPServerStreamableHttp`).
Their model is a scripted `agents.models.interface.Model`, so the example runs offline, with tracing
off and no API key; give the agents `model="gpt-5"` (and an `OPENAI_API_KEY`) to use a real one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from agents import Agent, Runner, set_tracing_disabled
from agents.items import ModelResponse
from agents.mcp import MCPServerStreamableHttp
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from two_agents_http import run_team

FINDINGS = [
    "The nightly backup job fails when the snapshot volume is over 90% full.",
    "The snapshot volume filled up because old snapshots are never pruned.",
    "A 14-day snapshot retention keeps the volume under 60%.",
]

Step = Callable[[list[dict[str, Any]]], dict[str, Any] | str]


class ScriptedModel(Model):
    """A model whose every turn is decided by ``step``: a tool call (``{"name", "arguments"}``) or the
    final text, from the tool outputs seen so far."""

    def __init__(self, step: Step) -> None:
        self._step = step

    async def get_response(self, system_instructions, input, model_settings, tools, *args, **kwargs) -> ModelResponse:  # noqa: ANN001, A002
        assert {"remember", "search"} <= {tool.name for tool in tools}, "the MCP tools reach the model"
        items = [] if isinstance(input, str) else [dict(item) for item in input]
        outputs = [item for item in items if item.get("type") == "function_call_output"]
        decided = self._step(outputs)
        if isinstance(decided, dict):
            call = ResponseFunctionToolCall(
                type="function_call",
                call_id=f"call_{len(outputs)}",
                name=decided["name"],
                arguments=json.dumps(decided["arguments"]),
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = ResponseOutputText(type="output_text", text=decided, annotations=[])
        message = ResponseOutputMessage(type="message", id="msg", role="assistant", status="completed", content=[text])
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example runs the agents without streaming")


def result_of(output: dict[str, Any]) -> dict[str, Any]:
    """A tool's result as the SDK hands it back: the server's content items, whose text is the JSON result;
    a failed call comes back as a plain string instead."""
    value = output["output"]
    if not isinstance(value, list):
        raise RuntimeError(f"the tool did not answer with a result: {value!r}")
    return json.loads(value[0]["text"])


def researcher_step(outputs: list[dict[str, Any]]) -> dict[str, Any] | str:
    if not outputs:
        memories = [{"text": text} for text in FINDINGS]
        return {"name": "remember", "arguments": {"memories": memories, "agent": "researcher", "tags": ["backups"]}}
    stored = result_of(outputs[-1])
    return f"Stored {stored['stored']} findings: {', '.join(stored['ids'])}"


def writer_step(outputs: list[dict[str, Any]]) -> dict[str, Any] | str:
    if not outputs:
        query = {"query": "why do the nightly backups fail and what fixes it?", "tags": ["backups"], "top_k": 2}
        return {"name": "search", "arguments": query}
    hits = result_of(outputs[-1])["hits"]
    return "Answer from shared memory: " + "; ".join(f"{h['text']} [{h['id']}, by {h['agent']}]" for h in hits)


async def run(url: str) -> tuple[str, str]:
    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
    # The SDK gives a tool call 5 s by default; the first remember of a fresh server waits for the models.
    options: dict[str, Any] = {"name": "mimir", "cache_tools_list": True, "client_session_timeout_seconds": 120}
    async with (
        MCPServerStreamableHttp({"url": url}, **options) as researcher_memory,
        MCPServerStreamableHttp({"url": url}, **options) as writer_memory,
    ):
        researcher = Agent(name="researcher", model=ScriptedModel(researcher_step), mcp_servers=[researcher_memory])
        writer = Agent(name="writer", model=ScriptedModel(writer_step), mcp_servers=[writer_memory])
        report = str((await Runner.run(researcher, "Record what we found about the backups.")).final_output)
        answer = str((await Runner.run(writer, "Why do the backups fail, and what fixes it?")).final_output)
    return report, answer


if __name__ == "__main__":
    run_team(__doc__.splitlines()[0], run)
