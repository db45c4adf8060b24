// rawServer (helpers.js) in a process of its own, for tests that block the
// client's event loop: the server must go on meanwhile. Prints its URL, then
// its counts as JSON after every change.
import { rawServer } from '../test/helpers.js';

const [mode, closeMs] = process.argv.slice(2);
const srv = await rawServer(mode, { closeMs: Number(closeMs), onChange: (st) => console.log(JSON.stringify(st)) });
console.log(srv.url);
