#!/usr/bin/env node
// A small chat-bot replica that takes its limits from `floodgate serve`.
// Messages arrive as events and are handled concurrently, as in a real bot:
// nothing blocks the event loop, one kept-alive connection pool serves all.
// Run several at once (or beside the Go and Python replicas): they share
// every limit.
//
//   FLOODGATE_URL=http://127.0.0.1:8080 node example.js
//
// Environment: FLOODGATE_URL, FLOODGATE_HTTP_TOKEN, BOT_MESSAGES (200),
// BOT_VIEWERS (30), BOT_SEED (1), BOT_ENDPOINTS ("http://localhost:1234,
// https://api.openai.com"), BOT_LLM_MS (50), BOT_LLM_FAIL (0.1),
// BOT_INTERVAL_MS (2: between messages), BOT_READY_TIMEOUT_MS (30000). It
// prints one JSON line: what it answered and why it held back the rest.
import { Client, Denied } from './index.js';

const env = process.env;
const fg = new Client({ baseUrl: env.FLOODGATE_URL || 'http://127.0.0.1:8080', token: env.FLOODGATE_HTTP_TOKEN || undefined });
const viewers = Array.from({ length: Number(env.BOT_VIEWERS || 30) }, (_, i) => `viewer${String(i).padStart(3, '0')}`);
const endpoints = (env.BOT_ENDPOINTS || 'http://localhost:1234,https://api.openai.com').split(',');
const llmMs = Number(env.BOT_LLM_MS || 50);
const llmFail = Number(env.BOT_LLM_FAIL || 0.1);
const interval = Number(env.BOT_INTERVAL_MS || 2);
const tally = {};
const count = (k) => { tally[k] = (tally[k] || 0) + 1; };

// A seeded generator (mulberry32), so that runs are repeatable.
let seed = Number(env.BOT_SEED || 1) >>> 0;
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function fakeLLM(prompt, fails) {
  await sleep(llmMs);
  if (fails) throw new Error('LLM timed out');
  return `reply to ${prompt}`;
}

async function onMessage(user, text, fails) {
  const d = await fg.allow(user); // per-viewer cooldown and window
  if (!d.allowed) return count(`held_${d.reason}`);
  const { endpoint, decision } = await fg.pick('llm', ...endpoints); // skip endpoints backing off
  if (!endpoint) return count(`held_${decision.reason}`);
  try {
    await fg.withSlot('llm', user, () => fg.call('llm', endpoint, () => fakeLLM(text, fails)), { timeoutMs: 5000 });
    count('answered');
  } catch (err) {
    if (err instanceof Denied) count(`held_${err.reason}`);
    else if (err.message === 'LLM timed out') count('llm_failed');
    else throw err;
  }
}

const deadline = Date.now() + Number(env.BOT_READY_TIMEOUT_MS || 30000);
while (!(await fg.ready())) { // e.g. started beside the server by docker compose
  if (Date.now() > deadline) {
    console.error(`example.js: ${fg.baseUrl} is not ready`);
    process.exit(1);
  }
  await sleep(500);
}

const pending = [];
for (let i = 0, n = Number(env.BOT_MESSAGES || 200); i < n; i++) {
  const user = viewers[Math.floor(random() * viewers.length)];
  pending.push(onMessage(user, `message ${i}`, random() < llmFail));
  if (interval > 0) await sleep(interval);
}
await Promise.all(pending);
fg.close();
console.log(JSON.stringify(Object.fromEntries(Object.entries(tally).sort())));
