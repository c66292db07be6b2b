// An ACP agent on the official TypeScript SDK (@agentclientprotocol/sdk, pinned in package.json),
// for corral's real-adapter tests.  Run with node.  The prompt text picks what it does:
//   [[permission]]   ask session/request_permission and say which option the client chose
//   [[fs:PATH]]      fs/write_text_file PATH, then fs/read_text_file it back, and say what it read
//   [[updates]]      send one session/update of each kind of ACP v1 (plan, tool calls with wrapped
//                    text and diff content, thought, commands, mode, config options, session info,
//                    usage, notice, compaction, a user message chunk, an image chunk), then an
//                    unknown kind and a malformed one
//   [[mcp]]          say which mcpServers session/new got (names, commands, args, env *names*), and
//                    spawn each stdio one as a child with the env it was given; wait until it
//                    writes a line to its stdout
//   [[hang]]         say "waiting", then wait for session/cancel and stop with "cancelled"
//   [[caps]]         say "terminal-cap:BOOL", the client's clientCapabilities.terminal
//   [[termlimit:N]]  pass outputByteLimit N to the terminals this turn creates
//   [[term:CMD]]     terminal/create `sh -c CMD`, wait_for_exit, output, release; say
//                    "term-exit:CODE:SIGNAL term-truncated:BOOL term-output:JSON" (or "term-error:CODE:MSG")
//   [[termflood:CMD]] create `sh -c CMD`, read its output until it is truncated; say
//                    "flood:ID truncated:BOOL bytes:N output:JSON" (keeps it running)
//   [[termready:CMD]] create `sh -c CMD`, wait until its output has "ready", say "term-ready:ID"
//                    and end the turn (never releasing it)
//   [[termhang:CMD]] the same, then wait for session/cancel
//   [[termkill:CMD]] create, wait for "ready", kill, wait_for_exit, output, release, output again;
//                    say "killed:CODE:SIGNAL kept:JSON after-release:ERRCODE"
//   [[termmany:N]]   create N `sleep 1000` terminals; say "many:OK" and "many-error:CODE:MSG" of the
//                    first refusal, then release them all
//   [[termbad:KIND]] a bad terminal request (outside, dotdot, symlink, unknown, session, nocmd, env,
//                    args, limit); say "termbad:KIND:CODE:MESSAGE"
// and otherwise streams the prompt back as three text chunks.  session/new advertises the modes
// "ask" and "code" (current "ask"); session/set_mode records the mode, and each reply starts with
// "mode:<id> " once one was set.
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const m = acp.methods;
const cancels = new Map(); // sessionId -> resolve() of the turn waiting for session/cancel
const modes = new Map(); // sessionId -> the mode session/set_mode chose
const servers = new Map(); // sessionId -> the mcpServers of its session/new
const MODES = [{ id: "ask", name: "Ask" }, { id: "code", name: "Code" }];
let sessions = 0;
let terminalCap = null; // clientCapabilities.terminal as the client advertised it

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function attempt(promise) {
  try {
    return [await promise, null];
  } catch (error) {
    return [null, error];
  }
}

function shell(sessionId, cmd, limit) {
  const params = { sessionId, command: "sh", args: ["-c", cmd] };
  if (limit !== null) params.outputByteLimit = limit;
  return params;
}

// Poll terminal/output until `done(answer)` (a test agent may poll; the client never does).
async function outputUntil(client, sessionId, terminalId, done) {
  for (;;) {
    const answer = await client.request(m.client.terminal.output, { sessionId, terminalId });
    if (done(answer) || answer.exitStatus) return answer;
    await sleep(20);
  }
}

async function terminals(client, sessionId, text) {
  const t = m.client.terminal;
  const said = [];
  const limitMatch = /\[\[termlimit:(\d+)\]\]/.exec(text);
  const limit = limitMatch ? Number(limitMatch[1]) : null;
  if (text.includes("[[caps]]")) said.push(`terminal-cap:${terminalCap}`);
  for (const [, cmd] of text.matchAll(/\[\[term:(.*?)\]\]/g)) {
    const [created, error] = await attempt(client.request(t.create, shell(sessionId, cmd, limit)));
    if (error) {
      said.push(`term-error:${error.code}:${error.message}`);
      continue;
    }
    const terminalId = created.terminalId;
    const exit = await client.request(t.waitForExit, { sessionId, terminalId });
    const out = await client.request(t.output, { sessionId, terminalId });
    await client.request(t.release, { sessionId, terminalId });
    said.push(`term-exit:${exit.exitCode}:${exit.signal} term-truncated:${out.truncated} term-output:${JSON.stringify(out.output)}`);
  }
  for (const [, cmd] of text.matchAll(/\[\[termflood:(.*?)\]\]/g)) {
    const { terminalId } = await client.request(t.create, shell(sessionId, cmd, limit));
    const out = await outputUntil(client, sessionId, terminalId, (a) => a.truncated);
    said.push(`flood:${terminalId} truncated:${out.truncated} bytes:${Buffer.byteLength(out.output)} output:${JSON.stringify(out.output)}`);
  }
  for (const [, cmd] of text.matchAll(/\[\[termkill:(.*?)\]\]/g)) {
    const { terminalId } = await client.request(t.create, shell(sessionId, cmd, limit));
    await outputUntil(client, sessionId, terminalId, (a) => a.output.includes("ready"));
    await client.request(t.kill, { sessionId, terminalId });
    const exit = await client.request(t.waitForExit, { sessionId, terminalId });
    const kept = await client.request(t.output, { sessionId, terminalId });
    await client.request(t.release, { sessionId, terminalId });
    const [, gone] = await attempt(client.request(t.output, { sessionId, terminalId }));
    said.push(`killed:${exit.exitCode}:${exit.signal} kept:${JSON.stringify(kept.output)} after-release:${gone?.code}`);
  }
  const many = /\[\[termmany:(\d+)\]\]/.exec(text);
  if (many) {
    const ids = [];
    let refusal = null;
    for (let i = 0; i < Number(many[1]); i++) {
      const [created, error] = await attempt(client.request(t.create, { sessionId, command: "sleep", args: ["1000"] }));
      if (created) ids.push(created.terminalId);
      else refusal ??= error;
    }
    for (const terminalId of ids) await client.request(t.release, { sessionId, terminalId });
    said.push(`many:${ids.length}`);
    if (refusal) said.push(`many-error:${refusal.code}:${refusal.message}`);
  }
  for (const [, kind] of text.matchAll(/\[\[termbad:(\w+)\]\]/g)) {
    const bad = {
      outside: { sessionId, command: "pwd", cwd: "/" },
      dotdot: { sessionId, command: "pwd", cwd: "../.." },
      symlink: { sessionId, command: "pwd", cwd: "escape" },
      session: { sessionId: "not-a-session", command: "pwd" },
      nocmd: { sessionId, command: "no-such-command-for-corral" },
      env: { sessionId, command: "pwd", env: [{ name: "A=B", value: "secret-value" }] },
      args: { sessionId, command: "pwd", args: ["ok", "bad\u0000arg"] },
      limit: { sessionId, command: "pwd", outputByteLimit: -1 },
    }[kind];
    const [, error] = bad
      ? await attempt(client.request(t.create, bad))
      : await attempt(client.request(t.output, { sessionId, terminalId: "term-never-made" }));
    said.push(`termbad:${kind}:${error?.code}:${error?.message}`);
  }
  for (const line of said) await say(client, sessionId, line + " ");
  const ready = /\[\[term(hang|ready):(.*?)\]\]/.exec(text);
  if (ready) {
    const { terminalId } = await client.request(t.create, shell(sessionId, ready[2], limit));
    await outputUntil(client, sessionId, terminalId, (a) => a.output.includes("ready"));
    await say(client, sessionId, `term-ready:${terminalId} `);
  }
  return ready?.[1] === "hang";
}

function textOf(prompt) {
  return prompt.filter((b) => b.type === "text").map((b) => b.text).join("");
}

async function say(client, sessionId, text) {
  await client.notify(m.client.session.update, {
    sessionId,
    update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } },
  });
}

async function update(client, sessionId, update) {
  await client.notify(m.client.session.update, { sessionId, update });
}

async function allUpdates(client, sessionId) {
  await update(client, sessionId, { sessionUpdate: "plan", entries: [
    { content: "read the notes", priority: "high", status: "completed" },
    { content: "write the fix", priority: "medium", status: "pending" },
  ] });
  await update(client, sessionId, { sessionUpdate: "agent_thought_chunk", content: { type: "text", text: "thinking it over" } });
  await update(client, sessionId, { sessionUpdate: "tool_call", toolCallId: "t1", title: "read notes", kind: "read",
    status: "in_progress", content: [{ type: "content", content: { type: "text", text: "notes: all good" } }] });
  await update(client, sessionId, { sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed",
    content: [{ type: "diff", path: "/ws/notes.txt", oldText: "old line\n", newText: "new line\n" }] });
  await update(client, sessionId, { sessionUpdate: "available_commands_update", availableCommands: [
    { name: "plan", description: "make a plan" }, { name: "test", description: "run the tests" },
  ] });
  await update(client, sessionId, { sessionUpdate: "current_mode_update", currentModeId: "code" });
  await update(client, sessionId, { sessionUpdate: "usage_update", used: 1200, size: 200000,
    cost: { amount: 0.25, currency: "USD" } });
  await update(client, sessionId, { sessionUpdate: "config_option_update", configOptions: [
    { id: "model", name: "Model", type: "select", currentValue: "fast", options: [{ value: "fast", name: "Fast" }] },
  ] });
  await update(client, sessionId, { sessionUpdate: "session_info_update", title: "Fixing the notes" });
  await update(client, sessionId, { sessionUpdate: "notice", severity: "warning", title: "rate limit near" });
  await update(client, sessionId, { sessionUpdate: "compaction_update", compactionId: "c1", status: "completed" });
  await update(client, sessionId, { sessionUpdate: "compaction_summary_chunk", compactionId: "c1",
    content: { type: "text", text: "summary so far" } });
  await update(client, sessionId, { sessionUpdate: "user_message_chunk", content: { type: "text", text: "echo of the prompt" } });
  await update(client, sessionId, { sessionUpdate: "x_future_kind", whatever: [1, 2, 3] });
  await update(client, sessionId, { sessionUpdate: "plan", entries: "not a list" }); // malformed
  await update(client, sessionId, { sessionUpdate: "agent_message_chunk", content: { type: "image", mimeType: "image/png", data: "iVBORw0KGgo=" } });
}

async function startMcp(client, sessionId) {
  const given = servers.get(sessionId) ?? [];
  const told = given.map((s) => `${s.name}:${s.command ?? s.url}:${(s.args ?? []).length}:${(s.env ?? s.headers ?? []).map((e) => e.name).join(",")}`);
  await say(client, sessionId, `mcp:${told.join(";")} `);
  for (const s of given.filter((s) => s.command)) {
    const env = Object.fromEntries((s.env ?? []).map((e) => [e.name, e.value]));
    const child = spawn(s.command, s.args ?? [], { env, stdio: ["pipe", "pipe", "inherit"] });
    await new Promise((resolve, reject) => {
      child.once("error", reject);
      child.stdout.once("data", resolve);
    });
    await say(client, sessionId, `started:${s.name} `);
  }
}

async function turn({ params, client }) {
  const { sessionId } = params;
  const text = textOf(params.prompt);
  if (modes.has(sessionId)) {
    await say(client, sessionId, `mode:${modes.get(sessionId)} `);
  }
  if (text.includes("[[updates]]")) {
    await allUpdates(client, sessionId);
  }
  if (text.includes("[[mcp]]")) {
    await startMcp(client, sessionId);
  }
  if (text.includes("[[permission]]")) {
    const answer = await client.request(m.client.session.requestPermission, {
      sessionId,
      toolCall: { toolCallId: "call-1", title: "edit notes", kind: "edit", status: "pending" },
      options: [
        { optionId: "yes", name: "Allow", kind: "allow_once" },
        { optionId: "no", name: "Reject", kind: "reject_once" },
      ],
    });
    const chose = answer.outcome.outcome === "selected" ? answer.outcome.optionId : "cancelled";
    await say(client, sessionId, `permission:${chose} `);
  }
  const fs = /\[\[fs:([^\]]+)\]\]/.exec(text);
  if (fs) {
    await client.request(m.client.fs.writeTextFile, { sessionId, path: fs[1], content: "written by sdk_agent.mjs" });
    const read = await client.request(m.client.fs.readTextFile, { sessionId, path: fs[1] });
    await say(client, sessionId, `read:${read.content} `);
  }
  const cancelled = new Promise((resolve) => cancels.set(sessionId, resolve));
  const termHang = await terminals(client, sessionId, text);
  if (termHang || text.includes("[[hang]]")) {
    await say(client, sessionId, "waiting");
    await cancelled;
    return { stopReason: "cancelled" };
  }
  cancels.delete(sessionId);
  const words = text.replace(/\[\[[^\]]*\]\]\s*/g, "").split(" ");
  const third = Math.ceil(words.length / 3);
  for (let i = 0; i < words.length; i += third) {
    const chunk = words.slice(i, i + third).join(" ");
    await say(client, sessionId, i + third < words.length ? chunk + " " : chunk);
  }
  return { stopReason: "end_turn" };
}

const app = acp
  .agent({ name: "corral-sdk-agent" })
  .onRequest(m.agent.initialize, ({ params }) => {
    terminalCap = params.clientCapabilities?.terminal ?? null;
    return {
    protocolVersion: acp.PROTOCOL_VERSION,
    agentCapabilities: { loadSession: false },
    authMethods: [],
    };
  })
  .onRequest(m.agent.session.new, ({ params }) => {
    const sessionId = `sdk-${++sessions}`;
    servers.set(sessionId, params.mcpServers);
    return { sessionId, modes: { currentModeId: "ask", availableModes: MODES } };
  })
  .onRequest(m.agent.session.setMode, ({ params }) => {
    if (!MODES.some((mode) => mode.id === params.modeId)) {
      throw acp.RequestError.invalidParams({ modeId: params.modeId });
    }
    modes.set(params.sessionId, params.modeId);
    return {};
  })
  .onRequest(m.agent.session.prompt, turn)
  .onNotification(m.agent.session.cancel, ({ params }) => {
    cancels.get(params.sessionId)?.();
    cancels.delete(params.sessionId);
  });

const connection = app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
await connection.closed;
