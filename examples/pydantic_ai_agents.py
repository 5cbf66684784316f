"""Two pydantic-ai agents sharing one mimir-mcp over streamable HTTP: a researcher remembers findings
under its agent name with tags, a writer searches them and cites their ids.

    pip install -e '.[examples]'
    python examples/pydantic_ai_agents.py                    # starts its own server on a temporary store
    python examples/pydantic_ai_agents.py --url http://127.0.0.1:8000/mcp

Both agents reach the server through pydantic-ai's own MCP client (`MCPToolset`). Their "models" are
pydantic-ai `FunctionModel`s that script the tool calls, so the example runs offline and the same way
every time; put `Agent("openai:gpt-5", toolsets=[MCPToolset(url)])` in their place to use a real model.
"""

from __future__ import annotations

import json

from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from two_agents_http import run_team

FINDINGS = [
    "Checkout p95 latency rose from 180 ms to 420 ms after the 3.2 release.",
    "The 3.2 release added a synchronous fraud check to every checkout.",
    "Making the fraud check asynchronous brings checkout p95 back to 190 ms.",
]


def tool_returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]


def researcher_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Scripted: remember the findings in one call, then report what was stored."""
    assert "remember" in {tool.name for tool in info.function_tools}, "the MCP tools reach the model"
    returned = tool_returns(messages)
    if not returned:
        arguments = {"memories": [{"text": text} for text in FINDINGS], "agent": "researcher", "tags": ["checkout"]}
        return ModelResponse(parts=[ToolCallPart("remember", arguments)])
    stored = _content(returned[-1])
    return ModelResponse(parts=[TextPart(f"Stored {stored['stored']} findings: {', '.join(stored['ids'])}")])


def writer_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Scripted: search the shared memory, then write an answer citing the ids it used."""
    returned = tool_returns(messages)
    if not returned:
        arguments = {"query": "why did checkout get slower and how do we fix it?", "tags": ["checkout"], "top_k": 2}
        return ModelResponse(parts=[ToolCallPart("search", arguments)])
    hits = _content(returned[-1])["hits"]
    cited = "; ".join(f"{hit['text']} [{hit['id']}, by {hit['agent']}]" for hit in hits)
    return ModelResponse(parts=[TextPart(f"Answer from shared memory: {cited}")])


def _content(part: ToolReturnPart) -> dict:
    """The tool's structured result, whether pydantic-ai hands it over parsed or as JSON text."""
    content = part.content
    return content if isinstance(content, dict) else json.loads(str(content))


async def run(url: str) -> tuple[str, str]:
    researcher = Agent(FunctionModel(researcher_model), toolsets=[MCPToolset(url)], name="researcher")
    writer = Agent(FunctionModel(writer_model), toolsets=[MCPToolset(url)], name="writer")
    report = (await researcher.run("Record what we found about checkout latency.")).output
    answer = (await writer.run("Why is checkout slow, and what fixes it?")).output
    return report, answer


if __name__ == "__main__":
    run_team(__doc__.splitlines()[0], run)
