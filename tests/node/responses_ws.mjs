// The openai Node SDK's Responses WebSocket client (ResponsesWS, on `ws`) through the relay.
//
//   node responses_ws.mjs <base_url> <api_key>
//
// Runs: two lanes at once (stream_id "a" and "b"), a previous_response_id continuation on
// lane "a", a create that names another route's model prefix (expects the relay's error
// event with its stream_id), then one more turn on the same socket. Prints one JSON object
// with what it saw; exits non-zero (with the reason on stderr) on anything unexpected.
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';

const [baseURL, apiKey, badModel] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const ws = new ResponsesWS(client);
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

const fail = (why) => {
  console.error(`node client: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 30_000).unref();

const waiters = [];
const errors = [];
ws.on('event', (ev) => {
  for (const w of [...waiters]) w(ev);
});
ws.on('error', (err) => {
  // The SDK raises `error` events here too (they also reach 'event' above); anything
  // else is a transport failure.
  if (err?.error) errors.push(err.error);
  else fail(`transport error: ${err?.message}`);
});

/** Resolve once every lane in `lanes` has a terminal (or error) event; collect events. */
function until(lanes) {
  return new Promise((resolve) => {
    const seen = Object.fromEntries(lanes.map((l) => [l, []]));
    const done = new Set();
    const w = (ev) => {
      const lane = ev.stream_id ?? ev.error?.stream_id ?? 'default';
      if (!(lane in seen)) return;
      seen[lane].push(ev);
      if (TERMINAL.has(ev.type) || ev.type === 'error') done.add(lane);
      if (done.size === lanes.length) {
        waiters.splice(waiters.indexOf(w), 1);
        resolve(seen);
      }
    };
    waiters.push(w);
  });
}

await new Promise((resolve, reject) => {
  ws.socket.once('open', resolve);
  ws.socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  ws.socket.once('error', reject);
}).catch((e) => fail(e.message));

const lanes = until(['a', 'b']);
ws.send({ type: 'response.create', model: 'gpt-5', input: 'one', stream_id: 'a' });
ws.send({ type: 'response.create', model: 'gpt-5-mini', input: 'two', stream_id: 'b' });
const first = await lanes;
const idA = first.a.at(-1)?.response?.id;
if (first.a.at(-1)?.type !== 'response.completed' || first.b.at(-1)?.type !== 'response.completed') {
  fail(`lanes did not complete: ${JSON.stringify(first).slice(0, 400)}`);
}
const chained = until(['a']);
ws.send({ type: 'response.create', model: 'gpt-5', input: 'more', stream_id: 'a', previous_response_id: idA });
const second = await chained;

const refused = until(['c']);
ws.send({ type: 'response.create', model: badModel, input: 'x', stream_id: 'c' });
const third = await refused;

const last = until(['default']);
ws.send({ type: 'response.create', model: 'gpt-5', input: 'after the refusal' });
const fourth = await last;

ws.close({ code: 1000, reason: 'done' });
const ids = [first.a, first.b, second.a, fourth.default].map((evs) => evs.at(-1)?.response?.id);
console.log(
  JSON.stringify({
    ids,
    lanes_interleaved: first.a.length > 0 && first.b.length > 0,
    chained_cached: second.a.at(-1)?.response?.usage?.input_tokens_details?.cached_tokens ?? 0,
    refusal: third.c.at(-1),
    last_type: fourth.default.at(-1)?.type,
  }),
);
process.exit(0);
