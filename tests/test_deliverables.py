"""What a new user touches first: the Claude Desktop config and the examples."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from mimir_mcp.cli.serve import CARRIED_ENV_PREFIXES

from .conftest import PYTHON, REPO, call, run_cli, server_env

BIN = str(Path(PYTHON).parent)


async def status_through(entry: dict, env: dict[str, str]) -> dict:
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env)
    async with Client(params, mode="legacy") as client:
        stored = await call(client, "remember", {"text": "configured from claude_config.json"})
        assert stored["stored"] == 1
        return await call(client, "status")


@pytest.mark.anyio
async def test_committed_claude_config_starts_the_server(tmp_path, cross_encoder_path):
    config = json.loads((REPO / "claude_config.json").read_text())
    entry = config["mcpServers"]["mimir"]
    env = server_env(tmp_path / "data", cross_encoder_path)
    env.update({key: value for key, value in entry.get("env", {}).items() if not key.startswith("MIMIR_RERANKER")})
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")  # after the README's install, mimir-mcp is on PATH
    status = await status_through(entry, env)
    assert status["memories"] == 1
    assert status["store"].startswith(f"embedded: {tmp_path}")


@pytest.mark.integration  # runs the command
def test_committed_claude_config_is_what_the_command_prints():
    """The committed file is the printed entry for a plain install: no flags, no MIMIR_*/Hugging Face
    environment, and the script by its name, for a ``mimir-mcp`` on the PATH."""
    bare = {key: value for key, value in os.environ.items() if not key.startswith(CARRIED_ENV_PREFIXES)}
    printed = subprocess.run(
        [PYTHON, "-m", "mimir_mcp", "--print-claude-config"], capture_output=True, text=True, check=True, env=bare
    )
    config = json.loads(printed.stdout)
    entry = config["mcpServers"]["mimir"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).name == "mimir-mcp"
    entry["command"] = "mimir-mcp"
    assert (REPO / "claude_config.json").read_text() == json.dumps(config, indent=2) + "\n"


@pytest.mark.anyio
async def test_printed_claude_config_needs_nothing_on_path(tmp_path, cross_encoder_path):
    """The printed entry starts the server as the printing command was started: its flags (not the HTTP-only
    ones), local paths made absolute, and its MIMIR_* and Hugging Face environment, secrets left out."""
    environment = server_env(tmp_path / "ignored", cross_encoder_path)
    environment.pop("MIMIR_STORE_DATA_DIR")
    environment["MIMIR_REMOTE_API_KEY"] = "sk-not-to-be-printed"
    printed = subprocess.run(
        [PYTHON, "-m", "mimir_mcp", "--print-claude-config", "--data-dir", str(tmp_path / "printed"), "--no-rerank"]
        + ["--port", "9999", "--log-level", "INFO"],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    entry = json.loads(printed.stdout)["mcpServers"]["mimir"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).exists()
    expected = ["--transport", "stdio", "--data-dir", str(tmp_path / "printed"), "--no-rerank", "--log-level", "INFO"]
    assert entry["args"][-len(expected) :] == expected
    assert "--port" not in entry["args"]
    assert (
        entry["env"]["HF_HUB_OFFLINE"] == "1"
        and entry["env"]["MIMIR_STORE_ONNX_CACHE_DIR"] == environment["MIMIR_STORE_ONNX_CACHE_DIR"]
    )
    assert "MIMIR_REMOTE_API_KEY" not in entry["env"] and "MIMIR_REMOTE_API_KEY" in printed.stderr
    assert "sk-not-to-be-printed" not in printed.stdout + printed.stderr
    env = {"PATH": "/usr/bin:/bin", **entry["env"]}  # Claude Desktop's PATH is short, its environment bare
    status = await status_through(entry, env)
    assert status["store"] == f"embedded: {tmp_path / 'printed' / 'chroma'}"
    assert status["reranker"] == "off"  # --no-rerank carried


def run_example(name: str, tmp_path: Path, cross_encoder: Path, *args: str) -> str:
    result = run_cli([str(REPO / "examples" / name), *args], tmp_path, cross_encoder, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_stdio_agent_example(tmp_path, cross_encoder_path):
    """Tried without flags, the example leaves the user's own store (here the environment's) untouched."""
    out = run_example("stdio_agent.py", tmp_path, cross_encoder_path)
    assert out.count("mem_") == 3
    assert "Kubernetes" in out and "search (hybrid" in out and '"ready": true' in out and "(ready, onnx-int8)" in out
    assert not (tmp_path / "cli-data").exists()  # MIMIR_STORE_DATA_DIR of run_cli: the "real" store


def test_two_agents_http_example(tmp_path, cross_encoder_path):
    out = run_example("two_agents_http.py", tmp_path, cross_encoder_path, "--data-dir", str(tmp_path / "kept"))
    assert out.count("[researcher] stored mem_") == 3
    assert out.count("[writer]   from researcher:") == 2
    assert (tmp_path / "kept" / "chroma").is_dir() and not (tmp_path / "cli-data").exists()


@pytest.mark.parametrize("example", ["pydantic_ai_agents.py", "openai_agents_team.py"])
def test_framework_agents_share_memory(tmp_path, cross_encoder_path, example):
    """Through each framework's own MCP client, offline with a scripted model: the writer agent finds and
    cites what the researcher agent stored, on one streamable-HTTP server the example starts."""
    import re

    out = run_example(example, tmp_path, cross_encoder_path)
    report = next(line for line in out.splitlines() if line.startswith("[researcher]"))
    answer = next(line for line in out.splitlines() if line.startswith("[writer]"))
    stored = set(re.findall(r"mem_[0-9a-f]{32}", report))
    cited = re.findall(r"\[(mem_[0-9a-f]{32}), by (\w+)\]", answer)
    assert len(stored) == 3 and len(cited) == 2
    assert {memory_id for memory_id, _ in cited} <= stored and {agent for _, agent in cited} == {"researcher"}
    assert not (tmp_path / "cli-data").exists()  # a temporary store, not the user's


def test_every_link_in_the_docs_resolves():
    """Relative links of README.md and docs/*.md point at files that exist and headings that are there."""
    import re

    def anchors(text: str) -> set[str]:
        found, fenced = set(), False
        for line in text.splitlines():
            fenced ^= line.startswith("```")
            if not fenced and re.match(r"#{1,4} ", line):
                title = line.lstrip("#").strip().lower().replace("`", "")
                found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
        return found

    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) >= 7  # the README and the six pages of docs/
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and anchor not in anchors(linked.read_text())):
                broken.append(f"{page.name}: {target}")
    assert not broken, broken
