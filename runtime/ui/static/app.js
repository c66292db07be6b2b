// corral's UI: live updates of the two server-rendered pages.  No build step, no dependency.
"use strict";
const corral = (() => {
  const token = document.querySelector('meta[name="corral-token"]').content;
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs = {}, text = "") => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  };
  const when = (ts) => (ts == null ? "" : new Date(ts * 1000).toLocaleString("sv-SE"));
  const seconds = (s) => (s == null ? "" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`);

  function debounce(fn, ms) {
    let timer = null;
    return () => { if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms); };
  }

  // ---- the job list: re-read when a runtime says jobs changed (server-sent events) -------------
  function jobsPage() {
    const refresh = debounce(async () => {
      const params = new URLSearchParams(location.search);
      const answer = await fetch(`/api/jobs?${params}`, { credentials: "same-origin" });
      if (!answer.ok) return;
      const { jobs } = await answer.json();
      const body = $("#jobs tbody");
      body.replaceChildren(...(jobs.length ? jobs.map(row) : [emptyRow()]));
    }, 200);
    const stream = new EventSource("/api/jobs/changes");
    stream.addEventListener("changed", refresh);
    stream.onopen = () => { $("#live").textContent = "live"; };
    stream.onerror = () => { $("#live").textContent = "reconnecting"; };
  }

  function emptyRow() {
    const tr = el("tr", { class: "empty" });
    tr.append(el("td", { colspan: "7" }, "no jobs"));
    return tr;
  }

  function row(job) {
    const tr = el("tr", { "data-job": job.job_id, "data-state": job.state });
    const link = el("a", { href: `/jobs/${job.job_id}` }, job.job_id.slice(0, 12));
    const cells = [link, job.flow, badge(job.state), owner(job), when(job.created_at), seconds(job.duration), job.reason || ""];
    for (const cell of cells) {
      const td = el("td");
      if (typeof cell === "string") td.textContent = cell; else td.append(cell);
      tr.append(td);
    }
    return tr;
  }

  function badge(state) { return el("span", { class: `badge ${state}` }, state); }

  function owner(job) {
    const span = el("span");
    if (!job.runtime_id) { span.append(el("span", { class: "dim" }, "none")); return span; }
    span.append(`${job.runtime_id.slice(0, 8)}${job.owner_pid ? ` pid ${job.owner_pid}` : ""} `);
    span.append(el("span", { class: job.owner_alive ? "alive" : "dead" }, job.owner_alive ? "alive" : "gone"));
    return span;
  }

  // ---- one job: its events live, the DAG coloured by them, the three actions -------------------
  function jobPage() {
    const jobId = $("#job").dataset.job;
    const steps = {};
    const streams = {};
    const node = (step) => document.querySelector(`#dag g.node[data-step="${CSS.escape(step)}"]`);

    function stepState(step, state, sub) {
      const g = node(step);
      if (!g) return;
      g.setAttribute("class", `node ${state}`);
      if (sub) g.querySelector("[data-sub]").textContent = sub;
    }

    function streamOf(step) {
      if (!streams[step]) {
        const box = el("div", { class: "stream", "data-step": step });
        box.append(el("div", { class: "who" }, step));
        const pre = el("pre", { class: "tokens" });
        box.append(pre);
        $("#streams").append(box);
        streams[step] = pre;
      }
      return streams[step];
    }

    function onStream(ev) {
      const update = ev.update || {};
      if (update.type === "Start" && streams[ev.step]?.textContent) {
        streams[ev.step].append(document.createTextNode("\n"));  // a new message of the step (a retry, a loop)
      }
      if (update.type !== "Delta" || !update.delta) return;
      const d = update.delta;
      const text = d.text ?? (d.arguments_delta != null ? `[${d.name || "tool"} ${d.arguments_delta}]`
        : d.content_delta != null ? `[${d.name || "tool"} → ${d.content_delta}]` : d.data ?? "");
      if (text) streamOf(ev.step).append(document.createTextNode(text));
    }

    function detail(ev) {
      switch (ev.type) {
        case "step_started": return `attempt ${ev.attempt}${ev.iteration ? `, iteration ${ev.iteration}` : ""}`;
        case "step_completed": return JSON.stringify(ev.outputs);
        case "step_failed": return `${ev.error} → ${ev.action}`;
        case "exit_resolved": return ev.rule ? `rule ${ev.rule} → ${ev.action}` : "advance";
        case "job_paused": return `rule ${ev.rule}`;
        case "job_resumed": return JSON.stringify(ev.payload);
        case "job_finished": return [ev.state, ev.reason, ev.error].filter(Boolean).join(" · ");
        case "agent_session": return `session ${ev.session_id}${ev.loaded ? " (reloaded)" : ""}`;
        default: return "";
      }
    }

    function apply(ev) {
      const s = ev.step;
      switch (ev.type) {
        case "step_stream": onStream(ev); return;
        case "step_started":
          steps[s] = { attempt: ev.attempt, iteration: ev.iteration };
          stepState(s, "running", `running · attempt ${ev.attempt}${ev.iteration ? ` · iteration ${ev.iteration}` : ""}`);
          break;
        case "step_completed": stepState(s, "completed", `completed${ev.iteration ? ` · iteration ${ev.iteration}` : ""}`); break;
        case "step_failed": stepState(s, ev.action === "retry" ? "retrying" : "failed", `${ev.action === "retry" ? "retrying" : "failed"} · attempt ${ev.attempt}`); break;
        case "step_cancelled": stepState(s, "cancelled", "cancelled"); break;
        case "job_paused": stepState(s, "paused", `paused · rule ${ev.rule}`); setState("paused"); break;
        case "job_resumed": setState("running"); break;
        case "job_started": setState("running"); break;
        case "job_finished": setState(ev.state, ev.reason); break;
      }
      const tr = el("tr", { "data-type": ev.type });
      for (const cell of [String(ev.seq), when(ev.ts), ev.type, s || "", detail(ev)]) tr.append(el("td", {}, cell));
      $("#events").append(tr);
      refreshProcesses();
    }

    function setState(state, reason) {
      const badgeEl = $("#state");
      badgeEl.textContent = state;
      badgeEl.className = `badge ${state}`;
      $("#job").dataset.state = state;
      if (reason !== undefined) $("#reason").textContent = reason || "";
    }

    const refreshProcesses = debounce(async () => {
      const answer = await fetch(`/api/jobs/${jobId}/processes`, { credentials: "same-origin" });
      if (!answer.ok) return;
      const { processes } = await answer.json();
      $("#procs").replaceChildren(...processes.map((p) => {
        const tr = el("tr", { "data-pid": String(p.pid) });
        for (const cell of [String(p.pid), `${(p.rss / 1048576).toFixed(1)} MiB`, p.command]) tr.append(el("td", {}, cell));
        return tr;
      }));
    }, 300);

    async function refreshRecord() {
      const answer = await fetch(`/api/jobs/${jobId}`, { credentials: "same-origin" });
      if (!answer.ok) return;
      const job = await answer.json();
      $("#outputs").textContent = JSON.stringify(job.outputs, null, 2);
      $("#error").textContent = job.error || "";
      setState(job.row.state, job.row.reason);
    }

    const stream = new EventSource(`/api/jobs/${jobId}/events?from=0`);
    stream.onmessage = (m) => apply(JSON.parse(m.data));
    stream.addEventListener("unavailable", (m) => { $("#message").textContent = JSON.parse(m.data); });
    stream.addEventListener("end", () => { stream.close(); refreshRecord(); refreshProcesses(); });
    refreshProcesses();

    async function act(action, body) {
      const message = $("#message");
      message.className = "";
      message.textContent = `${action}…`;
      const answer = await fetch(`/api/jobs/${jobId}/${action}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Corral-Token": token },
        body: JSON.stringify(body),
      });
      const result = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
      if (!answer.ok) { message.className = "error"; message.textContent = result.error; return; }
      message.className = "ok";
      message.textContent = action === "resume" ? "resumed" : `${result.state} (${result.reason})`;
      if (action !== "resume") refreshRecord();
    }

    $("#resume").addEventListener("click", () => {
      let payload;
      try { payload = JSON.parse($("#payload").value); } catch (e) {
        $("#message").className = "error";
        $("#message").textContent = `the payload is not valid JSON: ${e.message}`;
        return;
      }
      act("resume", { payload });
    });
    $("#cancel").addEventListener("click", () => act("cancel", { reason: "cancelled from the UI" }));
    $("#abandon").addEventListener("click", () => act("abandon", { reason: "abandoned from the UI" }));
  }

  return { jobsPage, jobPage };
})();
