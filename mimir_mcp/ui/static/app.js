// The Mimir web page: plain DOM, no build step, no library. Every text from the server is set with
// textContent (never parsed as HTML), and every read or change goes through the same tools agents call.
"use strict";

const TOKEN_KEY = "mimir-token";
const PAGE = 25;
const PREVIEW_CHARS = 300;
// Time phrases ("last week") are read in the person's own zone, as an agent passes `tz`.
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  session: null,
  namespaces: [],
  list: null, // {filters, memories: Map(id -> memory), cursor, total}
  live: null, // AbortController of the event stream
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// -- talking to the server -------------------------------------------------------------------------

async function api(path, { method = "GET", json, body, headers = {}, raw = false } = {}) {
  const sent = { ...headers };
  if (state.token) sent.Authorization = "Bearer " + state.token;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers: sent, body, cache: "no-store" });
  if (response.status === 401) {
    signedOut(state.token ? "This token was not accepted. Sign in again." : "");
    throw new ApiError(401, "Sign in with a token.");
  }
  if (raw && response.ok) return response;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error || response.statusText);
  return data;
}

const tool = (name, args) => api("api/tools/" + name, { method: "POST", json: args });
const can = (name) => Boolean(state.session && state.session.tools.includes(name));

// -- building the page (text only: nothing the server sends is read as HTML) ----------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const view = () => document.getElementById("view");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const memoryLink = (id, label) => el("a", { href: "#/memory/" + encodeURIComponent(id) }, label || id);

function show(...nodes) {
  view().replaceChildren(...nodes.filter(Boolean));
}

const plural = (count, one, many) => `${count} ${count === 1 ? one : many}`;
// {"dense": 1.38835, "bm25": 1} as "dense 1.388 · bm25 1"
const pairs = (object) =>
  Object.entries(object)
    .map(([key, value]) => `${key} ${typeof value === "number" ? Number(value.toFixed(3)) : value}`)
    .join(" · ");

function failure(error) {
  return el("p", { class: "error", role: "alert" }, error.message || String(error));
}

function field(label, input) {
  return el("label", {}, label, input);
}

function namespaceSelect(name, chosen, { all = true } = {}) {
  const options = state.namespaces.map((ns) =>
    el("option", { value: ns.namespace, selected: ns.namespace === chosen }, ns.namespace),
  );
  if (all) options.unshift(el("option", { value: "*", selected: !chosen || chosen === "*" }, "all namespaces"));
  return el("select", { name }, options);
}

function confirmBox(text, yes) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.close();
      document.getElementById("confirm-yes").onclick = null;
      document.getElementById("confirm-no").onclick = null;
      resolve(answer);
    };
    document.getElementById("confirm-yes").onclick = () => done(true);
    document.getElementById("confirm-no").onclick = () => done(false);
    dialog.oncancel = () => done(false);
  });
}

// -- signing in ------------------------------------------------------------------------------------------

function signedOut(message) {
  state.token = null;
  state.session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.live) state.live.abort();
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("live").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
  view().replaceChildren();
}

async function start() {
  try {
    state.session = await api("api/session");
  } catch (error) {
    if (error.status !== 401) document.getElementById("sign-in-error").textContent = error.message;
    return;
  }
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = !state.token;
  const who = state.session;
  const scope = who.namespaces ? who.namespaces.join(", ") : "every namespace";
  document.getElementById("who").textContent =
    (who.token ? "token " + who.token : "owner (no tokens)") + " · " + scope + (who.read_only ? " · read-only" : "");
  await loadNamespaces();
  listen();
  route();
}

async function loadNamespaces() {
  state.namespaces = (await api("api/namespaces")).namespaces;
}

// -- live changes: the server's event stream, read with fetch so the token travels in a header ---------------

async function listen(again = false) {
  if (state.live) state.live.abort();
  const controller = new AbortController();
  state.live = controller;
  const badge = document.getElementById("live");
  badge.hidden = false;
  badge.textContent = "connecting…";
  badge.className = "live";
  try {
    const response = await api("api/events", { raw: true, headers: { Accept: "text/event-stream" } });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    controller.signal.addEventListener("abort", () => reader.cancel());
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const lines = block.split("\n");
        const event = (lines.find((line) => line.startsWith("event:")) || "event: message").slice(6).trim();
        const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5)).join("\n");
        if (event === "ready") {
          badge.textContent = "live";
          badge.className = "live on";
          document.body.dataset.live = "on";
          // Back after a break (a restart, or this page fell behind): what changed meanwhile, listed afresh.
          if (again && state.list) renderMemories(state.list.filters);
        } else if (data) {
          await changed(JSON.parse(data).changes);
        }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  if (controller.signal.aborted || !state.session) return;
  // The stream ended (a restart, or this page fell behind): connect again.
  badge.textContent = "reconnecting…";
  badge.className = "live";
  document.body.dataset.live = "off";
  setTimeout(() => {
    if (state.live === controller) listen(true);
  }, 2000);
}

async function changed(changes) {
  loadNamespaces().then(renderNamespaces).catch(() => {});
  const list = state.list;
  if (!list) return;
  const ids = changes.map((change) => change.id);
  if (ids.length > PAGE) {
    renderMemories(list.filters); // a large batch (an import, a forget by filter): list afresh
    return;
  }
  let found = [];
  try {
    found = (await tool("get", { ids })).memories || [];
  } catch (error) {
    return;
  }
  const present = new Map(found.map((memory) => [memory.id, memory]));
  for (const id of ids) {
    const memory = present.get(id);
    if (!memory) {
      if (list.memories.delete(id)) list.total -= 1;
    } else if (matches(memory, list.filters)) {
      if (!list.memories.has(id)) {
        list.total += 1;
        list.memories = new Map([[id, { ...memory, fresh: true }], ...list.memories]);
      } else {
        list.memories.set(id, { ...memory, fresh: true });
      }
    }
  }
  if (state.list === list) drawList();
}

function matches(memory, filters) {
  if (filters.namespace && filters.namespace !== "*" && memory.namespace !== filters.namespace) return false;
  if (filters.agent && memory.agent !== filters.agent) return false;
  if (filters.tag && !(memory.tags || []).includes(filters.tag)) return false;
  return !filters.when; // a time phrase is the server's to read: a new memory is listed on the next load
}

// -- memories --------------------------------------------------------------------------------------

function filtersFromHash(query) {
  const params = new URLSearchParams(query);
  return {
    namespace: params.get("namespace") || "*",
    agent: params.get("agent") || "",
    tag: params.get("tag") || "",
    when: params.get("when") || "",
  };
}

function renderNamespaces() {
  const box = document.getElementById("namespaces");
  if (!box) return;
  const rows = state.namespaces.map((ns) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: "#/?namespace=" + encodeURIComponent(ns.namespace) }, ns.namespace)),
      el("td", { class: "number" }, ns.memories),
      el("td", {}, when(ns.latest)),
    ),
  );
  box.replaceChildren(
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Namespace"), el("th", {}, "Memories"), el("th", {}, "Latest"))), el("tbody", {}, rows)),
  );
}

async function renderMemories(filters) {
  const form = el(
    "form",
    { class: "filters", id: "filters" },
    field("Namespace", namespaceSelect("namespace", filters.namespace)),
    field("Agent", el("input", { name: "agent", value: filters.agent })),
    field("Tag", el("input", { name: "tag", value: filters.tag })),
    field("Time", el("input", { name: "when", value: filters.when, placeholder: "e.g. last week" })),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const params = new URLSearchParams();
    for (const [key, value] of data) if (value && !(key === "namespace" && value === "*")) params.set(key, value);
    location.hash = "#/?" + params.toString();
  });
  show(
    el("section", { class: "card" }, el("h2", {}, "Namespaces"), el("div", { id: "namespaces" })),
    el("section", { class: "card" }, el("h2", {}, "Memories"), form, el("div", { id: "memories" }, "Loading…")),
  );
  renderNamespaces();
  state.list = { filters, memories: new Map(), cursor: null, total: 0 };
  await more(state.list);
}

function listArguments(filters, cursor) {
  const args = { namespace: filters.namespace || "*", limit: PAGE, order: "newest", max_chars: PREVIEW_CHARS };
  if (filters.agent) args.agent = filters.agent;
  if (filters.tag) args.tags = [filters.tag];
  if (filters.when) Object.assign(args, { when: filters.when, tz: ZONE });
  if (cursor) args.cursor = cursor;
  return args;
}

async function more(list) {
  try {
    const page = await tool("list_memories", listArguments(list.filters, list.cursor));
    for (const memory of page.memories) list.memories.set(memory.id, memory);
    list.cursor = page.next_cursor || null;
    list.total = page.total;
    list.error = null;
  } catch (error) {
    list.error = error;
  }
  if (state.list === list) drawList();
}

function drawList() {
  const list = state.list;
  const box = document.getElementById("memories");
  if (!box) return;
  if (list.error) {
    box.replaceChildren(failure(list.error));
    return;
  }
  const rows = [...list.memories.values()].map((memory) =>
    el(
      "tr",
      { class: memory.fresh ? "memory fresh" : "memory", "data-id": memory.id },
      el("td", { class: "when" }, when(memory.created_at)),
      el("td", {}, memory.namespace),
      el("td", {}, memory.agent || ""),
      el("td", {}, (memory.tags || []).join(", ")),
      el("td", { class: "text" }, memoryLink(memory.id, memory.text)),
    ),
  );
  box.replaceChildren(
    el("p", { class: "count" }, plural(list.total, "memory", "memories") + ", newest first"),
    el(
      "table",
      { class: "memories" },
      el("thead", {}, el("tr", {}, ["Stored", "Namespace", "Agent", "Tags", "Text"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ),
    ...(list.cursor ? [el("button", { type: "button", onclick: () => more(list) }, "More")] : []),
  );
}

// -- one memory ------------------------------------------------------------------------------------

async function renderMemory(id) {
  state.list = null;
  show(el("p", {}, "Loading…"));
  let memory;
  try {
    const answer = await tool("get", { ids: [id] });
    memory = (answer.memories || [])[0];
  } catch (error) {
    show(failure(error));
    return;
  }
  if (!memory) {
    show(el("section", { class: "card" }, el("h2", {}, "Not found"), el("p", { class: "error", role: "alert" }, `No memory ${id} here.`)));
    return;
  }
  const metadata = { ...(memory.metadata || {}) };
  const facts = [
    ["Id", memory.id],
    ["Namespace", memory.namespace],
    ["Agent", memory.agent || "—"],
    ["Written by (token)", metadata.written_by || "—"],
    ["Source", memory.source || "—"],
    ["Stored", when(memory.created_at) + " (" + memory.created_at + ")"],
    ["Updated", memory.updated_at ? when(memory.updated_at) : "never"],
    ["Replaces", memory.supersedes || "—"],
    ["Tags", (memory.tags || []).join(", ") || "—"],
    ["Metadata", Object.keys(metadata).length ? JSON.stringify(metadata) : "—"],
  ];
  const card = el(
    "section",
    { class: "card", id: "memory" },
    el("h2", {}, "Memory"),
    el("pre", { class: "memory-text" }, memory.text),
    el("dl", { class: "facts" }, facts.map(([name, value]) => [el("dt", {}, name), el("dd", {}, value)])),
  );
  const parts = [card];
  if (can("update")) parts.push(editForm(memory));
  if (can("forget")) {
    parts.push(
      el(
        "section",
        { class: "card" },
        el("button", { type: "button", class: "danger", id: "forget-one", onclick: () => forgetOne(memory) }, "Forget this memory"),
      ),
    );
  }
  show(...parts);
}

function editForm(memory) {
  const metadata = { ...(memory.metadata || {}) };
  delete metadata.written_by;
  const text = el("textarea", { name: "text", rows: 6 }, memory.text);
  const tags = el("input", { name: "tags", value: (memory.tags || []).join(", ") });
  const meta = el("textarea", { name: "metadata", rows: 3 }, JSON.stringify(metadata));
  const message = el("p", { role: "status" });
  const form = el(
    "form",
    { class: "card edit", id: "edit" },
    el("h2", {}, "Edit"),
    field("Text", text),
    field("Tags (comma separated)", tags),
    field("Metadata (JSON object)", meta),
    el("button", { type: "submit" }, "Save"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const args = { id: memory.id };
    if (text.value !== memory.text) args.text = text.value;
    const newTags = tags.value.split(",").map((tag) => tag.trim()).filter(Boolean);
    if (newTags.join("\n") !== (memory.tags || []).join("\n")) args.tags = newTags;
    try {
      const parsed = JSON.parse(meta.value || "{}");
      if (JSON.stringify(parsed) !== JSON.stringify(metadata)) args.metadata = parsed;
    } catch (error) {
      message.className = "error";
      message.textContent = "metadata: not valid JSON";
      return;
    }
    if (Object.keys(args).length === 1) {
      message.className = "";
      message.textContent = "Nothing changed.";
      return;
    }
    try {
      const answer = await tool("update", args);
      location.hash = "#/memory/" + encodeURIComponent(answer.id);
      if (answer.id === memory.id) renderMemory(answer.id);
    } catch (error) {
      message.className = "error";
      message.textContent = error.message;
    }
  });
  return form;
}

async function forgetOne(memory) {
  if (!(await confirmBox(`Forget this memory for good? (${memory.id})`, "Forget it"))) return;
  try {
    await tool("forget", { ids: [memory.id] });
    location.hash = "#/?namespace=" + encodeURIComponent(memory.namespace);
  } catch (error) {
    view().append(failure(error));
  }
}

// -- search, as agents search, with what each stage saw -----------------------------------------------

function renderSearch(query) {
  state.list = null;
  const params = new URLSearchParams(query);
  const form = el(
    "form",
    { class: "filters", id: "search" },
    field("Query", el("input", { name: "query", value: params.get("query") || "", required: true, size: 40 })),
    field("Namespace", namespaceSelect("namespace", params.get("namespace") || "*")),
    field("Hits", el("input", { name: "top_k", type: "number", min: 1, max: 100, value: params.get("top_k") || 10 })),
    field("Time", el("input", { name: "when", value: params.get("when") || "", placeholder: "auto" })),
    state.session.reranks
      ? el("label", { class: "check" }, el("input", { type: "checkbox", name: "rerank", checked: params.get("rerank") !== "false" }), "rerank")
      : false,
    el("button", { type: "submit" }, "Search"),
  );
  const results = el("div", { id: "results" });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const key of ["query", "namespace", "top_k", "when"]) if (data.get(key)) next.set(key, data.get(key));
    if (state.session.reranks && !data.get("rerank")) next.set("rerank", "false");
    location.hash = "#/search?" + next.toString();
  });
  show(el("section", { class: "card" }, el("h2", {}, "Search"), form, results));
  if (params.get("query")) runSearch(params, results);
}

async function runSearch(params, results) {
  results.replaceChildren(el("p", {}, "Searching…"));
  const args = {
    query: params.get("query"),
    namespace: params.get("namespace") || "*",
    top_k: Number(params.get("top_k") || 10),
    rerank: state.session.reranks && params.get("rerank") !== "false",
    explain: true,
    tz: ZONE,
  };
  if (params.get("when")) args.when = params.get("when");
  let answer;
  try {
    answer = await tool("search", args);
  } catch (error) {
    results.replaceChildren(failure(error));
    return;
  }
  const fusion = answer.fusion || {};
  const summary = el(
    "dl",
    { class: "facts", id: "search-summary" },
    el("dt", {}, "Method"),
    el("dd", { class: "method" }, answer.search_method),
    answer.message ? [el("dt", {}, "What ran"), el("dd", {}, answer.message)] : null,
    answer.time_range ? [el("dt", {}, "Time"), el("dd", {}, pairs(answer.time_range))] : null,
    fusion.weights ? [el("dt", {}, "Arm weights"), el("dd", {}, pairs(fusion.weights))] : null,
    fusion.coverage ? [el("dt", {}, "Coverage"), el("dd", {}, pairs(fusion.coverage))] : null,
    fusion.method ? [el("dt", {}, "Fusion"), el("dd", {}, pairs({ method: fusion.method, context: fusion.context ? "yes" : "no", coherence: fusion.coherence ?? "—", mean_terms: fusion.mean_terms ?? "—" }))] : null,
    answer.candidates ? [el("dt", {}, "Candidates"), el("dd", {}, pairs(answer.candidates))] : null,
    answer.timings_ms ? [el("dt", {}, "Timings (ms)"), el("dd", {}, pairs(answer.timings_ms))] : null,
  );
  const number = (value, digits = 3) => (value === undefined || value === null ? "—" : Number(value).toFixed(digits));
  const rank = (place, score, digits) => (place === undefined || place === null ? "—" : `#${place} ${number(score, digits)}`);
  const rows = answer.hits.map((hit, index) => {
    const scores = hit.scores || {};
    return el(
      "tr",
      { class: "hit" },
      el("td", { class: "number" }, index + 1),
      el("td", { class: "text" }, memoryLink(hit.id, hit.text), el("div", { class: "meta" }, [hit.namespace, hit.agent, when(hit.created_at)].filter(Boolean).join(" · "))),
      el("td", { class: "number" }, number(hit.score)),
      el("td", { class: "number" }, rank(scores.dense_rank, scores.dense_similarity, 3)),
      el("td", { class: "number" }, rank(scores.bm25_rank, scores.bm25_score, 2)),
      el("td", { class: "number" }, rank(scores.context_rank, scores.context_score, 2)),
      el("td", { class: "number" }, number(scores.fused_score)),
      el("td", { class: "number" }, number(scores.rerank_score)),
    );
  });
  const head = ["", "Memory", "Score", "Dense", "BM25", "Context", "Fused", "Rerank"].map((h) => el("th", {}, h));
  results.replaceChildren(
    summary,
    answer.hits.length
      ? el("table", { class: "hits", id: "hits" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows))
      : el("p", {}, "No memory matches."),
  );
}

// -- status ------------------------------------------------------------------------------------------

function tree(value) {
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) {
    return value.every((item) => item === null || typeof item !== "object") ? value.join(", ") : el("ol", {}, value.map((item) => el("li", {}, tree(item))));
  }
  return el("dl", { class: "facts" }, Object.entries(value).map(([key, item]) => [el("dt", {}, key), el("dd", {}, tree(item))]));
}

async function renderStatus() {
  state.list = null;
  show(el("p", {}, "Loading…"));
  try {
    const status = await tool("status", { detail: true });
    show(el("section", { class: "card", id: "status" }, el("h2", {}, "Status"), tree(status)));
  } catch (error) {
    show(failure(error));
  }
}

// -- export, import, forget by filter -------------------------------------------------------------------

function renderData() {
  state.list = null;
  const parts = [exportCard()];
  if (state.session.can_import) parts.push(importCard());
  if (can("forget")) parts.push(forgetCard());
  show(...parts);
}

function exportCard() {
  const select = namespaceSelect("namespace", state.namespaces[0] && state.namespaces[0].namespace, { all: false });
  const message = el("p", { role: "status" });
  const button = el("button", { type: "button", id: "export" }, "Export as JSON Lines");
  button.addEventListener("click", async () => {
    try {
      const response = await api("api/export?namespace=" + encodeURIComponent(select.value), { raw: true });
      const blob = await response.blob();
      const link = el("a", { href: URL.createObjectURL(blob), download: `mimir-${select.value}.jsonl` });
      document.body.append(link);
      link.click();
      link.remove();
      message.textContent = `Exported ${select.value} (${blob.size} bytes).`;
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  });
  return el("section", { class: "card" }, el("h2", {}, "Export"), el("div", { class: "filters" }, field("Namespace", select), button), message);
}

function importCard() {
  const file = el("input", { type: "file", name: "file", accept: ".jsonl,.json,.ndjson,text/plain", id: "import-file" });
  const progress = el("progress", { value: 0, max: 1, id: "import-progress" });
  const message = el("p", { role: "status", id: "import-result" });
  const button = el("button", { type: "button", id: "import" }, "Import");
  button.addEventListener("click", async () => {
    if (!file.files.length) return;
    const lines = (await file.files[0].text()).split(/\r?\n/);
    while (lines.length && !lines[lines.length - 1].trim()) lines.pop();
    const step = state.session.import_lines;
    const total = { read: 0, stored: 0, already_present: 0 };
    progress.max = lines.length || 1;
    progress.value = 0;
    message.textContent = "";
    button.disabled = true;
    try {
      for (let first = 0; first < lines.length; first += step) {
        const part = lines.slice(first, first + step).join("\n");
        const answer = await api("api/import", {
          method: "POST",
          body: part,
          headers: { "Content-Type": "application/x-ndjson", "X-First-Line": String(first + 1) },
        });
        for (const key of Object.keys(total)) total[key] += answer[key];
        progress.value = Math.min(first + step, lines.length);
      }
      message.textContent = `Imported: ${total.read} read, ${total.stored} stored, ${total.already_present} already present.`;
      await loadNamespaces();
    } catch (error) {
      message.replaceChildren(failure(error), el("p", {}, `Stored before it: ${total.stored} of ${total.read} read.`));
    } finally {
      button.disabled = false;
    }
  });
  return el("section", { class: "card" }, el("h2", {}, "Import"), el("p", {}, "A JSON Lines file from an export (here or mimir-mcp export). Memories already stored are skipped."), el("div", { class: "filters" }, file, button), progress, message);
}

function forgetCard() {
  const form = el(
    "form",
    { class: "filters", id: "forget-filter" },
    field("Namespace", namespaceSelect("namespace", "*")),
    field("Agent", el("input", { name: "agent" })),
    field("Tag", el("input", { name: "tag" })),
    field("Stored after", el("input", { name: "created_after", type: "date" })),
    field("Stored before", el("input", { name: "created_before", type: "date" })),
    el("button", { type: "submit", class: "danger" }, "Forget…"),
  );
  const message = el("p", { role: "status", id: "forget-result" });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const args = {};
    if (data.get("namespace")) args.namespace = data.get("namespace");
    if (data.get("agent")) args.agent = data.get("agent");
    if (data.get("tag")) args.tags = [data.get("tag")];
    if (data.get("created_after")) args.created_after = data.get("created_after");
    if (data.get("created_before")) args.created_before = data.get("created_before");
    try {
      const dry = await tool("forget", { ...args, dry_run: true });
      if (!dry.matched) {
        message.textContent = "No memory matches these filters.";
        return;
      }
      const count = dry.matched;
      if (!(await confirmBox(`Forget ${plural(count, "memory", "memories")} for good?`, `Forget ${count}`))) return;
      const done = await tool("forget", { ...args, confirm: true });
      message.textContent = `Forgot ${plural(done.removed_count, "memory", "memories")}.`;
      await loadNamespaces();
    } catch (error) {
      message.replaceChildren(failure(error));
    }
  });
  return el("section", { class: "card" }, el("h2", {}, "Forget by filter"), el("p", {}, "Counts the memories first, then asks."), form, message);
}

// -- routes ------------------------------------------------------------------------------------------

function route() {
  if (!state.session) return;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const name = path.startsWith("/memory/") ? "memory" : path.slice(1) || "memories";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("current", link.dataset.view === name);
  if (name === "memory") renderMemory(decodeURIComponent(path.slice("/memory/".length)));
  else if (name === "search") renderSearch(query);
  else if (name === "status") renderStatus();
  else if (name === "data") renderData();
  else renderMemories(filtersFromHash(query));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    document.getElementById("token").value = "";
    start();
  });
  document.getElementById("sign-out").addEventListener("click", () => signedOut(""));
  window.addEventListener("hashchange", route);
  start();
});
