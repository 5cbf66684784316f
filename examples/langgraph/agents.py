"""Two LangGraph agents sharing one mimir-mcp over streamable HTTP: a researcher remembers findings
under its agent name with tags, a writer searches them and cites their ids.

langchain-mcp-adapters requires mcp<2 and mimir-mcp mcp>=2, so this example has an environment of its own
and reaches the server by its URL alone:

    mimir-mcp --transport streamable-http --port 8000 &      # in mimir-mcp's own environment
    python -m venv examples/langgraph/.venv
    examples/langgraph/.venv/bin/pip install -r examples/langgraph/requirements.txt
    examples/langgraph/.venv/bin/python examples/langgraph/agents.py --url http://127.0.0.1:8000/mcp

Each agent is a LangGraph `StateGraph` (a model node and a `ToolNode`, looping while the model calls
tools) whose tools come from langchain-mcp-adapters' `MultiServerMCPClient`, in an MCP session of its own.
Their model is a scripted chat model (`ScriptedChatModel`), so the example runs offline and the same way
every time. To use a real model, pip install `langchain` and `langchain-openai` (and set OPENAI_API_KEY),
and pass `langchain.chat_models.init_chat_model("openai:gpt-5")` to `agent_graph` in place of the
`ScriptedChatModel`; or build each agent with `langchain.agents.create_agent(model, tools)`, the prebuilt
form of the same loop (it replaces langgraph's deprecated `create_react_agent`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

FINDINGS = [
    "Checkout p95 latency rose from 180 ms to 420 ms after the 3.2 release.",
    "The 3.2 release added a synchronous fraud check to every checkout.",
    "Making the fraud check asynchronous brings checkout p95 back to 190 ms.",
]

Step = Callable[[list[ToolMessage]], dict[str, Any] | str]


class ScriptedChatModel(BaseChatModel):
    """A chat model whose every turn is decided by ``step``: a tool call (``{"name", "args"}``) or the final
    text, from the tool results seen so far. ``bind_tools`` records the tools' names, as a real model
    would be told of them."""

    step: Step
    tool_names: frozenset[str] = frozenset()

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self.model_copy(update={"tool_names": frozenset(tool.name for tool in tools)})

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        assert {"remember", "search"} <= self.tool_names, "the MCP tools reach the model"
        results = [message for message in messages if isinstance(message, ToolMessage)]
        decided = self.step(results)
        if isinstance(decided, dict):
            call = {"name": decided["name"], "args": decided["args"], "id": f"call_{len(results)}"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content=decided)
        return ChatResult(generations=[ChatGeneration(message=message)])


def result_of(message: ToolMessage) -> dict[str, Any]:
    """A tool's result as LangGraph hands it back: the server's structured content (the adapters keep it as
    the message's artifact), else the JSON text of its content."""
    if message.status == "error":
        raise RuntimeError(f"the {message.name} tool failed: {message.content}")
    artifact = message.artifact
    if isinstance(artifact, dict) and isinstance(artifact.get("structured_content"), dict):
        return artifact["structured_content"]
    content = message.content
    if isinstance(content, str):
        return json.loads(content)
    return json.loads("".join(block["text"] if isinstance(block, dict) else str(block) for block in content))


def researcher_step(results: list[ToolMessage]) -> dict[str, Any] | str:
    if not results:
        memories = [{"text": text} for text in FINDINGS]
        return {"name": "remember", "args": {"memories": memories, "agent": "researcher", "tags": ["checkout"]}}
    return "stored " + " ".join(result_of(results[-1])["ids"])


def writer_step(results: list[ToolMessage]) -> dict[str, Any] | str:
    if not results:
        query = {"query": "why did checkout get slower and how do we fix it?", "tags": ["checkout"], "top_k": 2}
        return {"name": "search", "args": query}
    hits = result_of(results[-1])["hits"]
    cited = "; ".join(f"{hit['text']} [{hit['id']}, by {hit.get('agent') or 'unknown'}]" for hit in hits)
    return f"Answer from shared memory: {cited}"


def agent_graph(model: BaseChatModel, tools: list[BaseTool], name: str):
    """The tool-calling loop as a LangGraph graph: the model answers, its tool calls run, until it answers
    with text alone."""
    bound = model.bind_tools(tools)

    async def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(name=name)


async def run_agent(url: str, name: str, step: Step, task: str) -> str:
    # One MCP session per agent. The read timeout covers a fresh server's first call, which waits for its models.
    client = MultiServerMCPClient({"mimir": {"transport": "streamable_http", "url": url, "sse_read_timeout": 300}})
    async with client.session("mimir") as session:
        tools = await load_mcp_tools(session)
        agent = agent_graph(ScriptedChatModel(step=step), tools, name)
        state = await agent.ainvoke({"messages": [HumanMessage(task)]})
    return str(state["messages"][-1].content)


async def run(url: str) -> tuple[str, str]:
    report = await run_agent(url, "researcher", researcher_step, "Record what we found about checkout latency.")
    answer = await run_agent(url, "writer", writer_step, "Why is checkout slow, and what fixes it?")
    return report, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000/mcp", help="The server's MCP endpoint (default: %(default)s)"
    )
    args = parser.parse_args()
    report, answer = asyncio.run(run(args.url))
    print(f"[researcher] {report}")
    print(f"[writer] {answer}")
    stored = set(re.findall(r"mem_[0-9a-f]{32}", report))
    cited = set(re.findall(r"mem_[0-9a-f]{32}", answer))
    print(f"the writer cited {len(cited)} of the researcher's {len(stored)} memories: {sorted(cited & stored)}")


if __name__ == "__main__":
    main()
