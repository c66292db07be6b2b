// An ACP agent on the official SDK (@agentclientprotocol/sdk) that keeps its sessions on disk and
// answers session/load, for corral's resume tests.  Run with node; its cwd is the job's workspace.
//   node load_agent.mjs [--no-load]    (--no-load: advertise loadSession: false)
// Each session is a file .load_agent/<id>.json in the cwd holding the prompts of its turns; every
// session/new and session/load is appended to .load_agent/calls.log.  session/load of a session
// that has no file is refused with -32002 (session not found); otherwise the history is replayed as
// user_message_chunk / agent_message_chunk notifications before the answer.  A prompt holding
// [[hang-once]] says "waiting" and waits for session/cancel the first time any session sees it
// (the flag file .load_agent/hung marks that); every other turn answers
// "session <id> turn <n>" (n counts the prompts the session has seen, this one included).
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const m = acp.methods;
const DIR = ".load_agent";
const canLoad = !process.argv.includes("--no-load");
const cancels = new Map();
let sessions = 0;
mkdirSync(DIR, { recursive: true });

const file = (id) => `${DIR}/${id}.json`;
const read = (id) => JSON.parse(readFileSync(file(id), "utf8"));
const write = (id, state) => writeFileSync(file(id), JSON.stringify(state));
const called = (what) => appendFileSync(`${DIR}/calls.log`, `${what}\n`);

async function say(client, sessionId, text, kind = "agent_message_chunk") {
  await client.notify(m.client.session.update, {
    sessionId,
    update: { sessionUpdate: kind, content: { type: "text", text } },
  });
}

async function load({ params, client }) {
  called(`load ${params.sessionId}`);
  if (!existsSync(file(params.sessionId))) throw acp.RequestError.sessionNotFound(params.sessionId);
  for (const [i, text] of read(params.sessionId).prompts.entries()) {
    await say(client, params.sessionId, text, "user_message_chunk");
    await say(client, params.sessionId, `(replayed turn ${i + 1})`);
  }
  return {};
}

async function turn({ params, client }) {
  const { sessionId } = params;
  const text = params.prompt.filter((b) => b.type === "text").map((b) => b.text).join("");
  const state = read(sessionId);
  state.prompts.push(text);
  write(sessionId, state);
  if (text.includes("[[hang-once]]") && !existsSync(`${DIR}/hung`)) {
    writeFileSync(`${DIR}/hung`, sessionId);
    const cancelled = new Promise((resolve) => cancels.set(sessionId, resolve));
    await say(client, sessionId, "waiting");
    await cancelled;
    return { stopReason: "cancelled" };
  }
  await say(client, sessionId, `session ${sessionId} turn ${state.prompts.length}`);
  return { stopReason: "end_turn" };
}

const app = acp
  .agent({ name: "corral-load-agent" })
  .onRequest(m.agent.initialize, () => ({
    protocolVersion: acp.PROTOCOL_VERSION,
    agentCapabilities: { loadSession: canLoad },
    authMethods: [],
  }))
  .onRequest(m.agent.session.new, () => {
    const sessionId = `load-${process.pid}-${++sessions}`;
    write(sessionId, { prompts: [] });
    called(`new ${sessionId}`);
    return { sessionId };
  })
  .onRequest(m.agent.session.load, load)
  .onRequest(m.agent.session.prompt, turn)
  .onNotification(m.agent.session.cancel, ({ params }) => {
    cancels.get(params.sessionId)?.();
    cancels.delete(params.sessionId);
  });

const connection = app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
await connection.closed;
