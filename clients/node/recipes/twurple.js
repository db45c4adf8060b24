// @twurple/chat: a handler for ChatClient.onMessage(channel, user, text, msg).
// `!ask <question>` goes to the LLM, `!wiki <term>` to an external API.
import { pathToFileURL } from 'node:url';
import { Client, Denied, FloodgateError } from 'floodgate-client';

export function attach(chat, fg, { endpoints, askLLM, lookup }) {
  chat.onMessage(async (channel, user, text, msg) => {
    const reply = (line) => chat.say(channel, line, { replyTo: msg });
    const [command, ...rest] = text.trim().split(/\s+/);
    if (command !== '!ask' && command !== '!wiki') return;
    const who = msg.userInfo.userId; // stable across renames
    try {
      const d = await fg.allow(who); // cooldown + window, shared by every replica
      if (!d.allowed) {
        await reply(`@${user} wait ${Math.ceil(d.retryAfterMs / 1000)}s (${d.reason})`);
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

// Run directly: node recipes/twurple.js (needs @twurple/chat and @twurple/auth).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { ChatClient } = await import('@twurple/chat');
  const { StaticAuthProvider } = await import('@twurple/auth');
  const authProvider = new StaticAuthProvider(process.env.TWITCH_CLIENT_ID, process.env.TWITCH_TOKEN);
  const chat = new ChatClient({ authProvider, channels: [process.env.TWITCH_CHANNEL] });
  const fg = new Client({ baseUrl: process.env.FLOODGATE_URL, token: process.env.FLOODGATE_HTTP_TOKEN });
  attach(chat, fg, {
    endpoints: (process.env.LLM_ENDPOINTS || 'http://localhost:1234').split(','),
    askLLM: async (endpoint, question) => `(${endpoint} would answer: ${question})`,
    lookup: async (term) => `https://en.wikipedia.org/wiki/${encodeURIComponent(term)}`,
  });
  chat.connect();
}
