// tmi.js: a handler for client.on('message', (channel, tags, message, self)).
// `!ask <question>` goes to the LLM, `!wiki <term>` to an external API.
import { pathToFileURL } from 'node:url';
import { ChatReplies, Client } from 'floodgate-client';

export function attach(client, fg, { endpoints, askLLM, lookup }) {
  const replies = new ChatReplies(fg, { endpoints, askLLM, lookup }); // allow, pick, slot, call: see docs/bots.md
  client.on('message', async (channel, tags, message, self) => {
    if (self) return; // the bot's own messages
    const r = await replies.reply(tags['user-id'], message); // the id is stable across renames
    if (r) await client.say(channel, `@${tags['display-name']} ${r.text}`);
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
