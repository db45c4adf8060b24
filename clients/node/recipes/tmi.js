// tmi.js: a handler for client.on('message', (channel, tags, message, self)).
// `!ask <question>` goes to the LLM, `!wiki <term>` to an external API.
import { pathToFileURL } from 'node:url';
import { Client, Denied, FloodgateError } from 'floodgate-client';

export function attach(client, fg, { endpoints, askLLM, lookup }) {
  client.on('message', async (channel, tags, message, self) => {
    if (self) return; // the bot's own messages
    const reply = (line) => client.say(channel, `@${tags['display-name']} ${line}`);
    const [command, ...rest] = message.trim().split(/\s+/);
    if (command !== '!ask' && command !== '!wiki') return;
    const who = tags['user-id']; // stable across renames
    try {
      const d = await fg.allow(who); // cooldown + window, shared by every replica
      if (!d.allowed) {
        await reply(`wait ${Math.ceil(d.retryAfterMs / 1000)}s (${d.reason})`);
        return;
      }
      if (command === '!wiki') {
        const b = await fg.wait('wikipedia', { timeoutMs: 3000 }); // the API's own rate
        await reply(b.allowed ? await lookup(rest.join(' ')) : 'Wikipedia is busy, try again soon');
        return;
      }
      const { endpoint, decision } = await fg.pick('llm', ...endpoints); // skip endpoints backing off
      if (!endpoint) {
        await reply(`the LLM is resting, try again in ${Math.ceil(decision.retryAfterMs / 1000)}s`);
        return;
      }
      const answer = await fg.withSlot('llm', who, // at most N viewers in the LLM at once
        () => fg.call('llm', endpoint, () => askLLM(endpoint, rest.join(' '))), // a throw backs it off
        { timeoutMs: 10_000 });
      await reply(answer);
    } catch (err) {
      if (err instanceof Denied) await reply(`busy (${err.reason}), try again in ${Math.ceil(err.retryAfterMs / 1000)}s`);
      else if (err instanceof FloodgateError) await reply('the rate limiter is unreachable, try again later');
      else await reply('the LLM failed, sorry');
    }
  });
}

// Run directly: node recipes/tmi.js (needs tmi.js).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { default: tmi } = await import('tmi.js');
  const client = new tmi.Client({
    identity: { username: process.env.TWITCH_USERNAME, password: process.env.TWITCH_TOKEN },
    channels: [process.env.TWITCH_CHANNEL],
  });
  const fg = new Client({ baseUrl: process.env.FLOODGATE_URL, token: process.env.FLOODGATE_HTTP_TOKEN });
  attach(client, fg, {
    endpoints: (process.env.LLM_ENDPOINTS || 'http://localhost:1234').split(','),
    askLLM: async (endpoint, question) => `(${endpoint} would answer: ${question})`,
    lookup: async (term) => `https://en.wikipedia.org/wiki/${encodeURIComponent(term)}`,
  });
  await client.connect();
}
