// The framework recipes (recipes/*.js, shown verbatim in docs/bots.md):
// the doc and the files agree, and each handler runs against a real server
// (FLOODGATE_TEST_URL) with a fake chat client and message objects shaped
// like the framework's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChatReplies, Client } from '../index.js';
import * as twurple from '../recipes/twurple.js';
import * as tmi from '../recipes/tmi.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const url = process.env.FLOODGATE_TEST_URL;
const token = process.env.FLOODGATE_TEST_TOKEN;
const run = randomBytes(4).toString('hex');

test('docs/bots.md shows each Node recipe file and ChatReplies.reply verbatim', () => {
  const doc = fs.readFileSync(path.join(here, '..', '..', '..', 'docs', 'bots.md'), 'utf8');
  const node = doc.slice(doc.indexOf('\n## Node'));
  assert.ok(node.length > 10, 'docs/bots.md has a ## Node section');
  for (const f of ['twurple.js', 'tmi.js']) {
    const src = fs.readFileSync(path.join(here, '..', 'recipes', f), 'utf8');
    assert.ok(node.includes('```js\n' + src + '```\n'), `docs/bots.md's Node section differs from clients/node/recipes/${f}`);
  }
  // ChatReplies.reply, the logic both share, as in the class (indented one level less).
  const reply = ChatReplies.prototype.reply.toString().split('\n').map((l, i) => (i ? l.replace(/^  /, '') : l)).join('\n');
  assert.ok(node.includes('```js\n' + reply + '\n```\n'), "docs/bots.md's Node section differs from ChatReplies.reply in index.js");
});

// Fake chat clients: they record the handler and what the bot says.
class FakeTwurple {
  handlers = [];
  said = [];
  onMessage(fn) {
    this.handlers.push(fn);
    return { unbind() {} };
  }
  async say(channel, text, attrs) {
    this.said.push({ channel, text, replyTo: attrs?.replyTo?.id });
  }
  // A message as ChatClient delivers it: (channel, user, text, msg).
  async send(user, text) {
    const msg = { id: `m-${this.said.length}`, userInfo: { userId: `id-${user}`, userName: user, displayName: user } };
    this.said.length = 0;
    await Promise.all(this.handlers.map((h) => h('#floodgate', user, text, msg)));
    return this.said.map((s) => s.text);
  }
}

class FakeTmi {
  handlers = [];
  said = [];
  on(event, fn) {
    if (event === 'message') this.handlers.push(fn);
    return this;
  }
  async say(channel, text) {
    this.said.push({ channel, text });
    return [channel, text];
  }
  // A message as tmi.js delivers it: (channel, tags, message, self).
  async send(user, text, self = false) {
    const tags = { 'user-id': `id-${user}`, username: user, 'display-name': user, id: 'x' };
    this.said.length = 0;
    await Promise.all(this.handlers.map((h) => h('#floodgate', tags, text, self)));
    return this.said.map((s) => s.text);
  }
}

for (const [name, recipe, Fake] of [['twurple', twurple, FakeTwurple], ['tmi.js', tmi, FakeTmi]]) {
  test(`recipe ${name}: allow, reply with the wait, slot, backoff, bucket`, { skip: url ? false : 'FLOODGATE_TEST_URL is not set' }, async () => {
    const fg = new Client({ baseUrl: url, token, timeoutMs: 10_000 });
    const chat = new Fake();
    const u = (s) => `${s}-${name}-${run}`;
    const eps = [`gpu1-${name}-${run}`, `gpu2-${name}-${run}`];
    const asked = [];
    const looked = [];
    recipe.attach(chat, fg, {
      endpoints: eps,
      askLLM: async (endpoint, q) => {
        asked.push(endpoint);
        const inUse = (await fg.slots('llm')).inUse;
        if (q === 'fail') throw new Error('LLM timed out');
        return `answer from ${endpoint} (slots in use ${inUse}): ${q}`;
      },
      lookup: async (term) => {
        looked.push(term);
        return `wiki: ${term}`;
      },
    });
    const id = (s) => `id-${u(s)}`;

    assert.deepEqual(await chat.send(u('alice'), 'hello there'), []);
    assert.equal((await fg.peek(id('alice'))).entries, 0, 'a plain message counts nothing');

    const [a1] = await chat.send(u('alice'), '!ask why?');
    assert.match(a1, new RegExp(`answer from ${eps[0]} \\(slots in use [1-7]\\): why\\?`));
    assert.equal((await fg.peek(id('alice'))).entries, 1);
    assert.equal((await fg.endpoint('llm', eps[0])).state, 'closed');

    const [a2] = await chat.send(u('alice'), '!ask again');
    assert.match(a2, /wait ([1-9]|10)s \(cooldown\)/); // of the 10 s cooldown, rounded up

    const [b] = await chat.send(u('bob'), '!ask fail');
    assert.match(b, /the LLM failed, sorry/);
    const st = await fg.endpoint('llm', eps[0]);
    assert.deepEqual([st.state, st.failures], ['open', 1], 'the failure backed the endpoint off');

    const [c] = await chat.send(u('carol'), '!ask next');
    assert.match(c, new RegExp(`answer from ${eps[1]} .*: next`), 'pick skipped the endpoint backing off');
    assert.deepEqual(asked, [eps[0], eps[0], eps[1]]);

    const [d] = await chat.send(u('dave'), '!wiki Go');
    assert.match(d, /wiki: Go/);
    const [e2] = await chat.send(u('erin'), '!wiki Redis'); // the bucket holds 1/s: this one waits
    assert.match(e2, /wiki: Redis/);
    assert.deepEqual(looked, ['Go', 'Redis']);
    assert.equal((await fg.slots('llm')).inUse, 0, 'every slot released');

    if (Fake === FakeTmi) assert.deepEqual(await chat.send(u('bot'), '!ask me', true), [], 'self messages ignored');

    const down = new Fake();
    const nowhere = new Client({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 500 });
    recipe.attach(down, nowhere, { endpoints: eps, askLLM: async () => 'x', lookup: async () => 'x' });
    const [z] = await down.send(u('zed'), '!ask hi');
    assert.match(z, /rate limiter is unreachable/);
    nowhere.close();
    fg.close();
  });
}
