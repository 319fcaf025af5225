import test from 'ava';
import { generateKeyPair } from '../crypto/keys.ts';
import { renderPeerConfig, interfaceAddresses } from './peerconfig.ts';
import { externalPeer, remoteNode, testKey } from './fixtures.ts';

// A cluster of three nodes: one publishes its endpoint, one has an operator's
// override, one has no endpoint; a fourth shares a key with the third (left out).
const nodes = [
  remoteNode('a-node1', 1, { endpoint: '198.18.0.11:51825' }),
  remoteNode('a-node2', 2, { endpoint: '198.18.0.12:51825', endpointOverride: '203.0.113.9:4500' }),
  remoteNode('a-node3', 3),
  remoteNode('a-node4', 3),
  remoteNode('a-node5', 5, { publicKey: null }),
];
const blocks = new Map([
  ['a-node1', ['100.64.0.64/26', '100.64.0.0/26']],
  ['a-node2', ['100.64.0.128/26']],
]);
const tunnelAddresses = new Map([
  ['a-node1', '100.127.10.1'],
  ['a-node2', '100.127.20.2'],
  ['a-node3', '100.127.30.3'],
]);

test('peer-config: a wg-quick file with a private-key placeholder (golden)', (t) => {
  const peer = externalPeer('laptop', 31, {
    endpoint: '198.51.100.7:51820',
    allowedIPs: ['100.126.0.1/32'],
    persistentKeepalive: 25,
  });
  const text = renderPeerConfig({
    peer,
    nodes,
    blocks,
    tunnelAddresses,
    source: 'https://198.18.0.1:6443',
  });
  t.snapshot(text);
  t.notRegex(text, /PrivateKey = [A-Za-z0-9+/]{43}=/, 'no private key is printed');
  t.false(text.includes('a-node4') || text.includes('a-node5'));
});

test('peer-config: with the user’s own private key, checked against the Peer (golden)', (t) => {
  const pair = generateKeyPair(() => new Uint8Array(32).fill(77));
  const peer = externalPeer('router', 77, {
    publicKey: pair.publicKey,
    allowedIPs: ['100.126.8.0/24'],
  });
  t.snapshot(
    renderPeerConfig({
      peer,
      nodes: nodes.slice(0, 1),
      blocks,
      tunnelAddresses,
      privateKey: pair.privateKey,
    }),
  );
  const other = generateKeyPair(() => new Uint8Array(32).fill(78));
  t.throws(
    () => renderPeerConfig({ peer, nodes, blocks, tunnelAddresses, privateKey: other.privateKey }),
    {
      message: /is not the one of Peer router's public key/,
    },
  );
  t.is(testKey(77), pair.publicKey);
});

test('peer-config: interface addresses from allowedIPs', (t) => {
  t.deepEqual(
    interfaceAddresses(['100.126.0.1/32', '100.126.8.0/24', 'fd00:126::/64', 'fd00:126::5/128']),
    ['100.126.0.1/32', '100.126.8.1/24', 'fd00:126::1/64', 'fd00:126::5/128'],
  );
});
