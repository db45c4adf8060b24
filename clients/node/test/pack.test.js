// `npm pack` makes an installable tarball holding the client and its
// types, and nothing else (no tests, no recipes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const dir = path.join(path.dirname(new URL(import.meta.url).pathname), '..');

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' } });
}

test('npm pack --dry-run lists exactly the package files', (t) => {
  let out;
  try {
    out = npm(['pack', '--dry-run', '--json'], dir);
  } catch (e) {
    if (e.code === 'ENOENT' && !process.env.CI) return t.skip('npm is not on PATH');
    throw e;
  }
  const [info] = JSON.parse(out);
  assert.equal(info.name, 'floodgate-client');
  assert.deepEqual(info.files.map((f) => f.path).sort(), ['README.md', 'index.d.ts', 'index.js', 'package.json']);
});

test('the tarball installs offline and imports', (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-pack-'));
  try {
    let tgz;
    try {
      tgz = npm(['pack', '--json', '--pack-destination', tmp], dir);
    } catch (e) {
      if (e.code === 'ENOENT' && !process.env.CI) return t.skip('npm is not on PATH');
      throw e;
    }
    const file = path.join(tmp, JSON.parse(tgz)[0].filename);
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","type":"module","private":true}');
    npm(['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', file], app);
    fs.writeFileSync(path.join(app, 'main.js'),
      "import { Client, Denied, version } from 'floodgate-client';\n" +
      "const c = new Client({ baseUrl: 'unix:///tmp/none.sock' }); c.close();\n" +
      "console.log(JSON.stringify({ version, denied: typeof Denied }));\n");
    const got = JSON.parse(execFileSync(process.execPath, ['main.js'], { cwd: app, encoding: 'utf8' }));
    assert.deepEqual(got, { version: '0.1.0', denied: 'function' });
    assert.ok(fs.existsSync(path.join(app, 'node_modules', 'floodgate-client', 'index.d.ts')));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
