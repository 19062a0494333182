// Reads a JSON array of apps (each an array of verbs) on stdin and prints one line per app:
// "ok" or "error: <message>" from @jambonz/verb-specifications' validate().
'use strict';
const { validate } = require('@jambonz/verb-specifications');

const logger = { info() {}, debug() {}, error() {}, warn() {} };
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  for (const app of JSON.parse(input)) {
    try {
      validate(logger, app);
      console.log('ok');
    } catch (e) {
      console.log(`error: ${e.message.replace(/\n/g, ' ')}`);
    }
  }
});
