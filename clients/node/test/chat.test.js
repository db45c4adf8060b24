// ChatReplies (index.js): the reply text for every outcome of a message,
// against a stand-in Client that answers as told and records the calls.
// The recipes run it against a real server (recipes.test.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatReplies, Denied, TransportError } from '../index.js';

const OK = { allowed: true, reason: 'none', retryAfterMs: 0 };
const denied = (reason, retryAfterMs) => ({ allowed: false, reason, retryAfterMs });

// The Client calls ChatReplies makes; each answers with what the test set
// (a decision, or an error to throw).
function standIn(answers = {}) {
  const calls = [];
  const set = { allow: OK, wait: OK, pick: { endpoint: 'ep-a', decision: OK }, slot: null, release: null, ...answers };
  const answer = (what, ...args) => {
    calls.push([what, ...args]);
    if (set[what] instanceof Error) throw set[what];
    return set[what];
  };
  return {
    calls,
    allow: async (user) => answer('allow', user),
    wait: async (name, opts) => answer('wait', name, opts.timeoutMs),
    pick: async (name) => answer('pick', name),
    withSlot: async (name, holder, fn, opts) => {
      answer('slot', name, holder, opts.timeoutMs);
      try {
        return await fn();
      } finally {
        answer('release', name, holder);
      }
    },
    abandon: async (name, endpoint, token) => {
      calls.push(['abandon', name, endpoint, token]);
    },
    call: async (name, endpoint, fn) => {
      calls.push(['call', name, endpoint]);
      return fn();
    },
  };
}

const options = {
  endpoints: ['ep-a', 'ep-b'],
  askLLM: async (endpoint, q) => {
    if (q === 'fail') throw new Error('LLM timed out');
    return `${endpoint} says: ${q}`;
  },
  lookup: async (term) => `wiki: ${term}`,
};
const reply = (fg, message) => new ChatReplies(fg, options).reply('u1', message);

test('ChatReplies: !ask is answered by the LLM inside a slot', async () => {
  const fg = standIn();
  assert.deepEqual(await reply(fg, '!ask why  not'), { text: 'ep-a says: why not', answered: true });
  assert.deepEqual(fg.calls, [['allow', 'u1'], ['pick', 'llm'], ['slot', 'llm', 'u1', 10_000], ['call', 'llm', 'ep-a'], ['release', 'llm', 'u1']]);
});

test('ChatReplies: an answer stands when only the release after it failed', async () => {
  const fg = standIn({ release: new Error('lease lost: the LLM outlasted it') });
  assert.deepEqual(await reply(fg, '!ask hi'), { text: 'ep-a says: hi', answered: true });
  assert.deepEqual(fg.calls.at(-1), ['release', 'llm', 'u1']);
  const failed = standIn({ release: new Error('lease lost') });
  assert.deepEqual(await reply(failed, '!ask fail'), { text: 'the LLM failed, sorry', answered: false });
});

test('ChatReplies: a message that is not a command gets no reply and counts nothing', async () => {
  const fg = standIn();
  assert.equal(await reply(fg, 'hello there'), null);
  assert.deepEqual(fg.calls, []);
});

test('ChatReplies: each refusal says why and when, rounded up to seconds', async () => {
  const cases = [
    [{ allow: denied('cooldown', 5200) }, '!ask x', 'wait 6s (cooldown)'],
    [{ wait: denied('rate', 900) }, '!wiki Go', 'Wikipedia is busy, try again soon'],
    [{ pick: { endpoint: null, decision: denied('backoff', 2500) } }, '!ask x', 'the LLM is resting, try again in 3s'],
    [{ slot: new Denied(denied('slots', 4000), 'slot of "llm"') }, '!ask x', 'busy (slots), try again in 4s'],
    [{ allow: new TransportError('down') }, '!ask x', 'the rate limiter is unreachable, try again later'],
    [{}, '!ask fail', 'the LLM failed, sorry'],
  ];
  for (const [answers, message, want] of cases) {
    assert.deepEqual(await reply(standIn(answers), message), { text: want, answered: false }, message);
  }
});

test('ChatReplies: !wiki takes a bucket token, then looks the term up', async () => {
  const fg = standIn();
  assert.deepEqual(await reply(fg, '!wiki Redis Cluster'), { text: 'wiki: Redis Cluster', answered: true });
  assert.deepEqual(fg.calls, [['allow', 'u1'], ['wait', 'wikipedia', 3000]]);
});

test('ChatReplies: refuses options it cannot use', () => {
  assert.throws(() => new ChatReplies(standIn(), { ...options, endpoints: [] }), /array of LLM endpoints/);
  assert.throws(() => new ChatReplies(standIn(), { ...options, lookup: undefined }), /askLLM and lookup/);
});

test('ChatReplies: a probe pick took is handed back before call checks', async () => {
  // Else call's own check is denied (reason "probing") by the probe pick
  // holds, and a bot with one endpoint never asks the LLM again.
  const fg = standIn({ pick: { endpoint: 'ep-a', decision: { ...OK, probe: true, token: 'P1' } } });
  assert.deepEqual(await reply(fg, '!ask hi'), { text: 'ep-a says: hi', answered: true });
  assert.deepEqual(fg.calls, [['allow', 'u1'], ['pick', 'llm'], ['abandon', 'llm', 'ep-a', 'P1'], ['slot', 'llm', 'u1', 10_000], ['call', 'llm', 'ep-a'], ['release', 'llm', 'u1']]);
});
