// @twurple/chat: a handler for ChatClient.onMessage(channel, user, text, msg).
// `!ask <question>` goes to the LLM, `!wiki <term>` to an external API.
import { pathToFileURL } from 'node:url';
import { ChatReplies, Client } from 'floodgate-client';

export function attach(chat, fg, { endpoints, askLLM, lookup }) {
  const replies = new ChatReplies(fg, { endpoints, askLLM, lookup }); // allow, pick, slot, call: see docs/bots.md
  chat.onMessage(async (channel, user, text, msg) => {
    const r = await replies.reply(msg.userInfo.userId, text); // the id is stable across renames
    if (r) await chat.say(channel, r.text, { replyTo: msg }); // a reply in the thread names the user
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
