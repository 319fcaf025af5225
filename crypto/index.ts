// crypto/: WireGuard keys: generate (X25519 with tweetnacl), store (mode 0600 under
// /var/lib/wiremesh), rotate, and validate every key read from the API. Keys cross
// this boundary only as canonical base64 strings; parsers return a result instead of
// throwing, because annotations are untrusted and a bad one is an Event, not a crash.
export * from './keys.ts';
export * from './store.ts';
