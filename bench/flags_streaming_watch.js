// Watch one flag with the official Node SDK (unleash-client) in streaming mode.
// Prints "ready <epoch ms>" once, then "on <epoch ms>" / "off <epoch ms>" at every change
// of the flag for one user. Used by bench/flags_streaming.py and tests/flags/test_streaming_node.py.
//
//   NODE_PATH=<dir>/node_modules node flags_streaming_watch.js URL TOKEN FLAG
const fs = require('fs');
const os = require('os');
const path = require('path');
const { initialize } = require('unleash-client');

// A backup of its own: the SDK would otherwise start from the flags a previous run left
// in the shared temp folder and report their state before the stream says anything.
const backupPath = fs.mkdtempSync(path.join(os.tmpdir(), 'streaming-watch-'));

const [url, token, flag] = process.argv.slice(2);
const client = initialize({
  url,
  appName: 'streaming-watch',
  customHeaders: { Authorization: token },
  experimentalMode: { type: 'streaming' },
  disableMetrics: true,
  skipInstanceCountWarning: true,
  backupPath,
});

let last = null;
function report() {
  const enabled = client.isEnabled(flag, { userId: 'student-1' });
  if (enabled !== last) {
    last = enabled;
    process.stdout.write(`${enabled ? 'on' : 'off'} ${Date.now()}\n`);
  }
}

client.on('error', (err) => process.stderr.write(`error ${err}\n`));
client.on('warn', (msg) => process.stderr.write(`warn ${msg}\n`));
client.on('ready', () => {
  process.stdout.write(`ready ${Date.now()}\n`);
  report();
});
client.on('changed', report);
process.stdin.on('end', () => {
  client.destroy();
  fs.rmSync(backupPath, { recursive: true, force: true });
  process.exit(0);
});
process.stdin.resume();
