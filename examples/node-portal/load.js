// Steady traffic for the Node portal: USERS concurrent students, each asking for the
// attempts of a random student id, for DURATION_S seconds (0: until stopped).
// Prints one line of totals at the end.
//
//   TARGET=http://127.0.0.1:8080 USERS=8 DURATION_S=60 node load.js
'use strict';

const target = process.env.TARGET || 'http://127.0.0.1:8080';
const users = Number(process.env.USERS || 8);
const durationS = Number(process.env.DURATION_S || 60);
const students = Number(process.env.STUDENTS || 2000);
const deadline = durationS > 0 ? Date.now() + durationS * 1000 : Infinity;
const totals = { ok: 0, failed: 0 };
let stopping = false;

async function student() {
  while (!stopping && Date.now() < deadline) {
    const user = `student-${Math.floor(Math.random() * students)}`;
    try {
      const res = await fetch(`${target}/api/attempts?user=${user}`);
      await res.arrayBuffer();
      totals[res.ok ? 'ok' : 'failed'] += 1;
    } catch (err) {
      totals.failed += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

process.on('SIGTERM', () => {
  stopping = true;
});
process.on('SIGINT', () => {
  stopping = true;
});
Promise.all(Array.from({ length: users }, student)).then(() => {
  console.log(JSON.stringify(totals));
});
