import test from 'ava';
import { composeTable } from './nftable.ts';

const chain = (name: string, rules: string[] = ['accept']) => ({ name, rules });

test('base chains jump to the entry chains in a fixed order: encryption before policy', (t) => {
  const table = composeTable({
    policy: { sets: [], maps: [], chains: [chain('policy-forward'), chain('policy-input')] },
    encrypt: { sets: [], maps: [], chains: [chain('encrypt-forward', ['drop'])] },
  });
  const forward = table.chains.find((c) => c.name === 'forward');
  t.deepEqual(forward?.rules, ['jump encrypt-forward', 'jump policy-forward']);
  t.is(forward?.base?.hook, 'forward');
  t.deepEqual(table.chains.find((c) => c.name === 'input')?.rules, ['jump policy-input']);
  t.falsy(
    table.chains.find((c) => c.name === 'postrouting'),
    'no base chain without a fragment entry',
  );
});

test('an empty composition is an empty table', (t) => {
  t.deepEqual(composeTable({}), { sets: [], maps: [], chains: [] });
});

test('two fragments defining one name, or a fragment defining a base chain, are refused', (t) => {
  const set = { name: 'pods', type: 'ipv4_addr', elements: [] };
  t.throws(
    () =>
      composeTable({
        policy: { sets: [set], maps: [], chains: [] },
        nat: { sets: [set], maps: [], chains: [] },
      }),
    { message: /'pods' is defined by both policy and nat/ },
  );
  t.throws(
    () =>
      composeTable({
        policy: {
          sets: [],
          maps: [],
          chains: [
            {
              name: 'mine',
              base: { type: 'filter', hook: 'input', priority: 0, policy: 'drop' },
              rules: [],
            },
          ],
        },
      }),
    { message: /only the agent/ },
  );
  t.throws(() => composeTable({ policy: { sets: [], maps: [], chains: [chain('forward')] } }), {
    message: /'forward' is defined by both the agent and policy/,
  });
});

test('no jump to an empty entry chain, and no base chain that would only hold such jumps', (t) => {
  // Every forwarded packet walks the base chain's jumps: a policy fragment with nothing
  // isolated, or an encryption fragment without a Required pool, must cost nothing.
  const table = composeTable({
    policy: { sets: [], maps: [], chains: [chain('policy-forward', [])] },
    encrypt: {
      sets: [],
      maps: [],
      chains: [chain('encrypt-forward', ['drop']), chain('encrypt-output', [])],
    },
  });
  t.deepEqual(table.chains.find((c) => c.name === 'forward')?.rules, ['jump encrypt-forward']);
  t.falsy(table.chains.find((c) => c.name === 'output'));
  t.truthy(
    table.chains.find((c) => c.name === 'policy-forward'),
    'the empty chain itself stays',
  );
});
