// An ACP agent on the official TypeScript SDK (@agentclientprotocol/sdk, pinned in package.json),
// for corral's real-adapter tests.  Run with node.  The prompt text picks what it does:
//   [[permission]]   ask session/request_permission and say which option the client chose
//   [[fs:PATH]]      fs/write_text_file PATH, then fs/read_text_file it back, and say what it read
//   [[hang]]         say "waiting", then wait for session/cancel and stop with "cancelled"
// and otherwise streams the prompt back as three text chunks.
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const m = acp.methods;
const cancels = new Map(); // sessionId -> resolve() of the turn waiting for session/cancel
let sessions = 0;

function textOf(prompt) {
  return prompt.filter((b) => b.type === "text").map((b) => b.text).join("");
}

async function say(client, sessionId, text) {
  await client.notify(m.client.session.update, {
    sessionId,
    update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } },
  });
}

async function turn({ params, client }) {
  const { sessionId } = params;
  const text = textOf(params.prompt);
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
  if (text.includes("[[hang]]")) {
    const cancelled = new Promise((resolve) => cancels.set(sessionId, resolve));
    await say(client, sessionId, "waiting");
    await cancelled;
    return { stopReason: "cancelled" };
  }
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
  .onRequest(m.agent.initialize, () => ({
    protocolVersion: acp.PROTOCOL_VERSION,
    agentCapabilities: { loadSession: false },
    authMethods: [],
  }))
  .onRequest(m.agent.session.new, () => ({ sessionId: `sdk-${++sessions}` }))
  .onRequest(m.agent.session.prompt, turn)
  .onNotification(m.agent.session.cancel, ({ params }) => {
    cancels.get(params.sessionId)?.();
    cancels.delete(params.sessionId);
  });

const connection = app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
await connection.closed;
