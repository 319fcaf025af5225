// crypto/: WireGuard keys: generate (X25519 with tweetnacl), store (mode 0600 under
// /var/lib/wiremesh), rotate, and validate every public key read from the API.
// Built under the WireGuard mesh issue; this file is its public face.
export {};
