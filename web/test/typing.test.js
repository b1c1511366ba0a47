import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TypingSender, TypingRoster, describeTyping } from '../sdk/typing.js';
import { FakeClock } from './fakes.js';

function sender() {
  const clock = new FakeClock();
  const t0 = clock.now();
  const sent = [];
  const s = new TypingSender({ clock, send: (c, v) => (sent.push({ at: clock.now() - t0, c, v }), true) });
  return { clock, sent, s };
}

test('typing sends true once, then at most every 3 s while the user keeps typing', async () => {
  const { clock, sent, s } = sender();
  for (let i = 0; i < 70; i++) {
    s.input('c1'); // a keystroke every 100 ms for 7 s
    await clock.advance(100);
  }
  assert.deepEqual(sent.filter((x) => x.v).map((x) => x.at), [0, 3000, 6000]);
  assert.equal(sent.filter((x) => !x.v).length, 0, 'no stop while typing');
});

test('typing stops (false) after 3 s without input', async () => {
  const { clock, sent, s } = sender();
  s.input('c1');
  await clock.advance(1000);
  s.input('c1');
  await clock.advance(2999);
  assert.equal(sent.length, 1);
  await clock.advance(1);
  assert.deepEqual(sent.at(-1), { at: 4000, c: 'c1', v: false });
});

test('sending a message stops typing at once', async () => {
  const { clock, sent, s } = sender();
  s.input('c1');
  await clock.advance(500);
  s.stop('c1');
  assert.deepEqual(sent.map((x) => [x.at, x.v]), [[0, true], [500, false]]);
  await clock.advance(10_000);
  assert.equal(sent.length, 2, 'no second stop from the idle timer');
});

test('typing again after a stop sends true at once', async () => {
  const { clock, sent, s } = sender();
  s.input('c1');
  s.stop('c1');
  await clock.advance(200);
  s.input('c1');
  assert.deepEqual(sent.map((x) => [x.at, x.v]), [[0, true], [0, false], [200, true]]);
});

test('stop without typing sends nothing', () => {
  const { sent, s } = sender();
  s.stop('c1');
  assert.equal(sent.length, 0);
});

test('someone typing is hidden after 4 s without news', async () => {
  const clock = new FakeClock();
  const seen = [];
  const r = new TypingRoster({ clock, onChange: (c, users) => seen.push(users) });
  r.update('c1', 'u-b', true);
  assert.deepEqual(r.users('c1'), ['u-b']);
  await clock.advance(3999);
  assert.deepEqual(r.users('c1'), ['u-b']);
  await clock.advance(1);
  assert.deepEqual(r.users('c1'), []);
  assert.deepEqual(seen, [['u-b'], []]);
});

test('each refresh restarts the 4 s; a stop hides at once', async () => {
  const clock = new FakeClock();
  const r = new TypingRoster({ clock, onChange: () => {} });
  r.update('c1', 'u-b', true);
  await clock.advance(3000);
  r.update('c1', 'u-b', true);
  await clock.advance(3000);
  assert.deepEqual(r.users('c1'), ['u-b']);
  r.update('c1', 'u-b', false);
  assert.deepEqual(r.users('c1'), []);
});

test('typing line wording of seed 001', () => {
  assert.equal(describeTyping([]), '');
  assert.equal(describeTyping(['Bob']), 'Bob is typing...');
  assert.equal(describeTyping(['Bob', 'Carol']), 'Bob and Carol are typing...');
  assert.equal(describeTyping(['Bob', 'Carol', 'Dan']), '3 people are typing...');
});
