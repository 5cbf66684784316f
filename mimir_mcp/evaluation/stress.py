"""``mimir-mcp stress``: many agents at once against a real server over streamable HTTP.

It starts ``mimir-mcp --transport streamable-http`` on 127.0.0.1 with its own scratch data dir, waits until
both models and their ONNX copies are in place (so the window measures the steady state, not the start),
stores ``memories`` memories, then runs ``clients`` MCP sessions for ``duration`` seconds, each calling
``remember`` (30%), a default ``search`` (35%, reranked) and ``search`` with ``rerank: false`` (35%) back
to back, while one more session calls ``status`` every half second. It reports throughput, latency
percentiles per operation, errors, the server's RSS, how the reranked searches were served (in full,
trimmed under load, or in the hybrid's order), and whether every acknowledged write can be read back.
Figures, not assertions: the load table of docs/quality-and-speed.md comes from here.

With ``nodes`` above one it starts a ``chroma run`` server and that many servers on it, each with its own data
dir, and spreads the clients over them. Two more checks run meanwhile: a text sent to two nodes at once, a few
times a second (new to exactly one of them?), and a memory remembered on one node, then searched for on every
other until found (how long until visible). After the window every node is asked for every acknowledged id
and for its count.
"""

from __future__ import annotations

import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from mimir_mcp.evaluation.bench import Corpus, default_reranker_path

OPERATIONS = ("remember", "search", "search_no_rerank", "status")
# Shares of the clients' calls; status is polled by a session of its own.
MIX = (("remember", 0.30), ("search", 0.35), ("search_no_rerank", 0.35))
STATUS_INTERVAL_S = 0.5
CALL_TIMEOUT_S = 120.0
SEED_BATCH = 100
# Several nodes: a pair sent to two nodes at once this often; a probe searched for on the others this often,
# for at most this long; and the wait after the window for every node's sync interval (1 s by default).
PAIR_INTERVAL_S = 0.25
VISIBILITY_POLL_S = 0.05
VISIBLE_WITHIN_S = 10.0
SETTLE_S = 1.5


@dataclass
class Tally:
    """What the sessions saw, gathered on the client side from each answer."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in OPERATIONS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    error_samples: list[str] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    reranked_full: int = 0
    trimmed: int = 0
    fell_back: dict[str, int] = field(default_factory=dict)
    reranked_candidates: list[int] = field(default_factory=list)
    # Latency of the reranked searches by how they were served: full, trimmed, fell back.
    served: dict[str, list[float]] = field(default_factory=lambda: {"full": [], "trimmed": [], "fell_back": []})
    # Several nodes: how many of each pair's two answers said new; how long until another node showed a write.
    pairs: list[int] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)
    never_visible: int = 0

    def error(self, operation: str, detail: str) -> None:
        self.errors[operation] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{operation}: {detail[:300]}")

    def classify(self, answer: dict[str, Any], milliseconds: float) -> None:
        """A search that asked for reranking: scored in full, trimmed under load, or not reranked (why)."""
        candidates = answer["candidates"]
        if answer["search_method"] == "hybrid+rerank":
            self.reranked_candidates.append(candidates["reranked"])
            if candidates["reranked"] < min(candidates["fused"], 50):
                self.trimmed += 1
                self.served["trimmed"].append(milliseconds)
            else:
                self.reranked_full += 1
                self.served["full"].append(milliseconds)
            return
        self.served["fell_back"].append(milliseconds)
        message = answer["message"]
        reason = (
            "busy (admission control)"
            if "cross-encoder was busy" in message
            else "timeout"
            if "took longer than" in message
            else "loading"
            if "still loading" in message
            else "other"
        )
        self.fell_back[reason] = self.fell_back.get(reason, 0) + 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
    except OSError:
        return 0.0, 0.0
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used (Linux ``/proc/stat``; 0 elsewhere)."""
    try:
        values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_chroma(path: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    """``chroma run`` (installed beside this Python) on a free local port; returns once it accepts connections."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    command = [str(chroma if chroma.exists() else "chroma"), "run", "--path", str(path), "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen([*command, "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    wait_listening(process, port, log_path, "chroma run")
    return process, port


def wait_listening(process: subprocess.Popen, port: int, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{name} did not listen within 120 s: {tail(log_path)}")


def start_server(
    data_dir: Path, reranker: Path, log_path: Path, chroma_port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """``mimir-mcp --transport streamable-http`` on a free local port (on the Chroma server at ``chroma_port``
    when given); returns once it accepts connections."""
    port = free_port()
    # A scratch server of its own: no tokens from this shell's environment (the clients send none).
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIMIR_AUTH_")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if chroma_port is not None:
        env.update({"MIMIR_STORE_CHROMA_HOST": "127.0.0.1", "MIMIR_STORE_CHROMA_PORT": str(chroma_port)})
    command = [
        sys.executable,
        "-m",
        "mimir_mcp",
        "--transport",
        "streamable-http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--reranker-model",
        str(reranker),
        "--log-level",
        "WARNING",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
    wait_listening(process, port, log_path, "the server")
    return process, f"http://127.0.0.1:{port}/mcp"


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


async def call(client: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Structured content of a tool call; an error answer raises with the text the agent would read."""
    with anyio.fail_after(CALL_TIMEOUT_S):
        result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(text or f"{tool} answered with an error")
    return result.structured_content


async def wait_until_steady(client: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Poll ``status`` until both models are loaded and their ONNX copies built (or failed)."""
    deadline = time.monotonic() + 600
    while True:
        status = (await call(client, "status", {"detail": True}))["detail"]
        reranker, embedding = status["reranker"], status["embedding"]
        loading = "loading" in (reranker["state"], embedding["state"], status["store"]["state"])
        building = "building" in reranker["backend"] + embedding["query_backend"]
        if not loading and not building:
            if reranker["state"] != "ready":
                raise RuntimeError(f"the cross-encoder did not load: {reranker['error']}")
            return status
        if time.monotonic() > deadline:
            raise RuntimeError("the models were not ready within 600 s")
        say(
            f"waiting for the models: reranker {reranker['state']} ({reranker['backend']}), "
            f"query encoder {embedding['query_backend']}"
        )
        await anyio.sleep(1.0)


async def seed(client: Any, texts: list[str], say: Callable[[str], None]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), SEED_BATCH):
        batch = [{"text": text} for text in texts[start : start + SEED_BATCH]]
        await call(client, "remember", {"memories": batch, "agent": "stress-seed"})
        say(f"stored {min(start + SEED_BATCH, len(texts))}/{len(texts)} memories")
    return time.perf_counter() - started


async def agent(index: int, client: Any, corpus: Corpus, deadline: float, tally: Tally, rng: random.Random) -> None:
    """One client calling tools back to back until ``deadline``."""
    calls = 0
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    while time.monotonic() < deadline:
        operation = rng.choices(names, weights)[0]
        if operation == "remember":
            text = f"Note {index}-{calls} from stress agent {index}: {rng.choice(corpus.documents)[:300]}"
            arguments: dict[str, Any] = {"text": text, "agent": f"stress-{index}", "tags": ["stress"]}
        else:
            arguments = {"query": rng.choice(corpus.queries), "rerank": operation == "search", "explain": True}
        started = time.perf_counter()
        try:
            answer = await call(client, "remember" if operation == "remember" else "search", arguments)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and sampled, none stops the run
            tally.error(operation, f"{type(exc).__name__}: {exc}")
        else:
            milliseconds = (time.perf_counter() - started) * 1000
            tally.latencies[operation].append(milliseconds)
            if operation == "remember":
                tally.acknowledged.update(answer["ids"])
            elif operation == "search":
                tally.classify(answer, milliseconds)
        calls += 1


async def poll_status(client: Any, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            await call(client, "status", {})
        except Exception as exc:  # noqa: BLE001 - counted like the others
            tally.error("status", f"{type(exc).__name__}: {exc}")
        else:
            tally.latencies["status"].append((time.perf_counter() - started) * 1000)
        await anyio.sleep(STATUS_INTERVAL_S)


async def lost_writes(client: Any, ids: list[str], page: int = 100) -> list[str]:
    """Acknowledged ids that ``get`` cannot find now."""
    missing: list[str] = []
    for start in range(0, len(ids), page):
        answer = await call(client, "get", {"ids": ids[start : start + page]})
        missing.extend(answer.get("not_found", []))
    return missing


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    array = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p95_ms": round(float(np.percentile(array, 95)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "max_ms": round(float(array.max()), 1),
    }


async def send_pairs(clients: list[Any], deadline: float, tally: Tally, rng: random.Random) -> None:
    """A new text sent to two nodes at once, a few times a second: each must be new to exactly one."""
    count = 0
    while time.monotonic() < deadline:
        first = count % len(clients)
        second = (first + 1) % len(clients)
        text = f"Pair note {count}-{rng.getrandbits(32)}: sent to nodes {first} and {second} at once"
        answers: list[dict[str, Any]] = []

        async def send(client: Any, text: str = text, answers: list[dict[str, Any]] = answers) -> None:
            started = time.perf_counter()
            try:
                answers.append(await call(client, "remember", {"text": text, "agent": "stress-pairs"}))
            except Exception as exc:  # noqa: BLE001 - counted like the others
                tally.error("remember", f"{type(exc).__name__}: {exc}")
            else:
                tally.latencies["remember"].append((time.perf_counter() - started) * 1000)

        async with anyio.create_task_group() as group:
            group.start_soon(send, clients[first])
            group.start_soon(send, clients[second])
        if len(answers) == 2:
            tally.pairs.append(sum(answer["stored"] for answer in answers))
            tally.acknowledged.update(answers[0]["ids"])
        count += 1
        await anyio.sleep(PAIR_INTERVAL_S)


async def watch_visibility(clients: list[Any], deadline: float, tally: Tally) -> None:
    """Remember a memory on one node, then search for it on every other until it is the top hit of both arms;
    the delay runs from the write's answer to the start of the search that found it."""
    count = 0
    while time.monotonic() < deadline:
        writer = count % len(clients)
        text = f"Visibility probe {count}: written on node {writer} at {time.time():.3f}"
        try:
            memory_id = (await call(clients[writer], "remember", {"text": text, "agent": "stress-probe"}))["ids"][0]
        except Exception as exc:  # noqa: BLE001 - counted like the others
            tally.error("remember", f"{type(exc).__name__}: {exc}")
            continue
        written = time.perf_counter()
        tally.acknowledged.add(memory_id)
        waiting = [client for index, client in enumerate(clients) if index != writer]
        while waiting and time.perf_counter() - written < VISIBLE_WITHIN_S:
            for client in list(waiting):
                asked = time.perf_counter()  # the search's own time under load is not the node's delay
                arguments = {"query": text, "rerank": False, "top_k": 1, "explain": True}
                try:
                    found = await call(client, "search", arguments)
                except Exception as exc:  # noqa: BLE001 - counted like the others
                    tally.error("search_no_rerank", f"{type(exc).__name__}: {exc}")
                    continue
                top = found["hits"][0] if found["hits"] else None
                if top is not None and top["id"] == memory_id:
                    scores = top.get("scores") or {}
                    if scores.get("dense_rank") == 1 and scores.get("bm25_rank") == 1:
                        tally.visible_ms.append((asked - written) * 1000)
                        waiting.remove(client)
            await anyio.sleep(VISIBILITY_POLL_S)
        tally.never_visible += len(waiting)
        count += 1


async def drive(
    urls: list[str],
    pids: list[int],
    *,
    clients: int,
    duration: float,
    memories: int,
    corpus: Corpus,
    seed_value: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from mcp import Client

    report: dict[str, Any] = {}
    async with AsyncExitStack() as controls_stack:
        controls = [await controls_stack.enter_async_context(Client(url)) for url in urls]
        control = controls[0]
        say("waiting for both models and their ONNX copies, so the window measures the steady state")
        for each in controls:
            steady = await wait_until_steady(each, say)
        report["reranker_backend"] = steady["reranker"]["backend"]
        report["query_backend"] = steady["embedding"]["query_backend"]
        report["seed_s"] = round(await seed(control, corpus.documents_for(memories), say), 1)
        for each in controls:
            await call(each, "search", {"query": corpus.queries[0]})  # one warm search through every stage

        tally = Tally()
        async with AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(Client(urls[index % len(urls)])) for index in range(clients)]
            say(f"{clients} clients connected to {len(urls)} node(s); running for {duration:g} s")
            started = time.monotonic()
            deadline = started + duration
            cpu_before = (sum(cpu_seconds(pid) for pid in pids), own_cpu_seconds(), machine_busy_seconds())
            async with anyio.create_task_group() as group:
                for index, session in enumerate(sessions):
                    rng = random.Random(seed_value * 1000 + index)
                    group.start_soon(agent, index, session, corpus, deadline, tally, rng)
                group.start_soon(poll_status, control, deadline, tally)
                if len(urls) > 1:
                    group.start_soon(send_pairs, controls, deadline, tally, random.Random(seed_value))
                    group.start_soon(watch_visibility, controls, deadline, tally)
            elapsed = time.monotonic() - started
            cpu_after = (sum(cpu_seconds(pid) for pid in pids), own_cpu_seconds(), machine_busy_seconds())
        rss = [rss_mb(pid) for pid in pids]
        nodes, missing_on = [], []
        if len(urls) > 1:
            await anyio.sleep(SETTLE_S)  # the nodes' sync interval, with a margin
        for each in controls:
            await call(each, "search", {"query": corpus.queries[0], "rerank": False})  # the read that syncs
            missing_on.append(await lost_writes(each, sorted(tally.acknowledged)))
            nodes.append({"memories": (await call(each, "status", {}))["memories"], "lost": len(missing_on[-1])})
        missing = missing_on[0]

    calls = sum(len(values) for name, values in tally.latencies.items() if name != "status")
    report.update(
        {
            "clients": clients,
            "duration_s": duration,
            "elapsed_s": round(elapsed, 1),
            "memories": memories,
            "calls": calls + sum(tally.errors[name] for name in OPERATIONS if name != "status"),
            "throughput_per_s": round(calls / elapsed, 2) if elapsed else 0.0,
            "operations": {
                name: {"count": len(tally.latencies[name]), "errors": tally.errors[name], **percentiles(values)}
                for name, values in tally.latencies.items()
            },
            "errors": sum(tally.errors.values()),
            "error_samples": tally.error_samples,
            "rerank": {
                "asked": tally.reranked_full + tally.trimmed + sum(tally.fell_back.values()),
                "full": tally.reranked_full,
                "trimmed": tally.trimmed,
                "fell_back": sum(tally.fell_back.values()),
                "fell_back_why": tally.fell_back,
                "latency_by_outcome": {name: percentiles(values) for name, values in tally.served.items()},
                "mean_candidates_reranked": round(float(np.mean(tally.reranked_candidates)), 1)
                if tally.reranked_candidates
                else 0.0,
            },
            "writes": {"acknowledged": len(tally.acknowledged), "lost": len(missing), "lost_ids": missing[:10]},
            # Cores in use on average during the window: the server(s), this command's clients, and the whole
            # machine (the difference is other processes).
            "cpu_cores": {
                name: round((after - before) / elapsed, 2) if elapsed else 0.0
                for name, before, after in zip(("server", "clients", "machine"), cpu_before, cpu_after, strict=True)
            },
            "rss_mb": round(max(resident for resident, _ in rss), 1),
            "peak_rss_mb": round(max(peak for _, peak in rss), 1),
            "server_memories": nodes[0]["memories"],
        }
    )
    if len(urls) > 1:
        report["nodes"] = {
            "count": len(urls),
            "per_node": [
                {**node, "rss_mb": round(resident, 1)} for node, (resident, _) in zip(nodes, rss, strict=True)
            ],
            "pairs": {"sent": len(tally.pairs), "new_to_exactly_one": sum(stored == 1 for stored in tally.pairs)},
            "visibility": {
                "seen": len(tally.visible_ms),
                "not_seen_within_s": VISIBLE_WITHIN_S,
                "not_seen": tally.never_visible,
                **percentiles(tally.visible_ms),
            },
        }
    return report


def leaves(error: BaseException) -> list[BaseException]:
    """The errors inside nested exception groups (each client session adds a level), which a traceback cuts off."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def run_stress(
    *,
    clients: int = 16,
    duration: float = 60.0,
    memories: int = 1000,
    nodes: int = 1,
    reranker: str | None = None,
    dataset: Path | None = None,
    seed_value: int = 7,
    say: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    corpus = Corpus(dataset)
    with tempfile.TemporaryDirectory(prefix="mimir-stress-") as scratch:
        folder = Path(scratch)
        model_path = Path(reranker) if reranker else default_reranker_path(folder / "cross-encoder")
        processes: list[subprocess.Popen] = []
        logs = [folder / f"server-{index}.log" for index in range(nodes)]
        try:
            chroma_port = None
            if nodes > 1:
                chroma, chroma_port = start_chroma(folder / "chroma", folder / "chroma.log")
                processes.append(chroma)
                say(f"chroma run on port {chroma_port}")
            urls = []
            for index, log in enumerate(logs):
                process, url = start_server(folder / f"data-{index}", model_path, log, chroma_port)
                processes.append(process)
                urls.append(url)
                say(f"server {url} (pid {process.pid})")
            servers = processes[-nodes:]
            report = anyio.run(
                lambda: drive(
                    urls,
                    [process.pid for process in servers],
                    clients=clients,
                    duration=duration,
                    memories=memories,
                    corpus=corpus,
                    seed_value=seed_value,
                    say=say,
                )
            )
        except BaseException as exc:
            for log in logs:
                say(f"server log: {tail(log)}")
            for leaf in leaves(exc):
                say(f"failed: {type(leaf).__name__}: {leaf}")
            raise
        finally:
            for process in reversed(processes):  # the nodes before the store they write to
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    report.update(
        {
            "corpus": corpus.source,
            "reranker": str(reranker or "MiniLM-L6-H384 one-logit head on the bundled backbone"),
            "cpu_count": os.cpu_count(),
        }
    )
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"mimir-mcp stress: {report['clients']} clients over streamable HTTP for {report['duration_s']:g} s "
        f"({report['elapsed_s']:g} s with the calls in flight at the end), {report['memories']} memories "
        f"({report['corpus']}), {report['cpu_count']} CPUs",
        f"reranker: {report['reranker']}, backend {report['reranker_backend']}; "
        f"queries embedded by {report['query_backend']} (measured after both were ready)",
        f"throughput: {report['throughput_per_s']:.1f} calls/s ({report['calls']} calls)",
    ]
    for name, row in report["operations"].items():
        lines.append(
            f"{name:<17} {row['count']:>6} calls  p50 {row['p50_ms']:>8.1f} ms  p95 {row['p95_ms']:>8.1f} ms  "
            f"p99 {row['p99_ms']:>8.1f} ms  max {row['max_ms']:>8.1f} ms  errors {row['errors']}"
        )
    rerank = report["rerank"]
    why = ", ".join(f"{reason} {count}" for reason, count in rerank["fell_back_why"].items()) or "none"
    lines.append(
        f"reranked searches: {rerank['asked']} asked, {rerank['full']} reranked in full, {rerank['trimmed']} trimmed, "
        f"{rerank['fell_back']} fell back ({why}); "
        f"{rerank['mean_candidates_reranked']:g} candidates reranked on average"
    )
    lines.append(
        "  latency by outcome: "
        + "; ".join(
            f"{name} p50 {row['p50_ms']:.0f} / p95 {row['p95_ms']:.0f} / max {row['max_ms']:.0f} ms"
            for name, row in rerank["latency_by_outcome"].items()
        )
    )
    lines.append(f"errors: {report['errors']}" + (f" (e.g. {report['error_samples'][0]})" if report["errors"] else ""))
    writes = report["writes"]
    lines.append(f"writes: {writes['acknowledged']} acknowledged, {writes['lost']} lost (every id read back with get)")
    cores = report["cpu_cores"]
    lines.append(
        f"CPU during the window, in cores: server {cores['server']:.2f}, the clients of this command "
        f"{cores['clients']:.2f}, whole machine {cores['machine']:.2f} of {report['cpu_count']}"
    )
    lines.append(f"server RSS: {report['rss_mb']:.0f} MB (peak {report['peak_rss_mb']:.0f} MB)")
    if "nodes" in report:
        nodes = report["nodes"]
        per_node = "; ".join(
            f"node {index}: {node['memories']} memories, {node['lost']} acknowledged ids missing, "
            f"{node['rss_mb']:.0f} MB RSS"
            for index, node in enumerate(nodes["per_node"])
        )
        lines.append(f"{nodes['count']} nodes on one Chroma server: {per_node}")
        pairs = nodes["pairs"]
        lines.append(
            f"texts sent to two nodes at once: {pairs['sent']}, new to exactly one node: {pairs['new_to_exactly_one']}"
        )
        seen = nodes["visibility"]
        lines.append(
            f"a write on one node, top hit of both arms on another: p50 {seen['p50_ms']:.0f} / "
            f"p95 {seen['p95_ms']:.0f} / max {seen['max_ms']:.0f} ms ({seen['seen']} seen, "
            f"{seen['not_seen']} not within {seen['not_seen_within_s']:g} s)"
        )
    return "\n".join(lines)
