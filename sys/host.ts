// Facts about the host that tests and the lab must check before they start, with
// errors that say exactly what is missing.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(`${what} needs root (network namespaces, links and mounts); run it as root`);
  }
}

/** Where hack/build-tools.sh puts the Go-built tools (etcd, kube-apiserver, ...). */
export function toolCacheDir(): string {
  return process.env.WIREMESH_CACHE ?? join(homedir(), '.cache', 'wiremesh');
}

/** Path of a Go-built tool, or an error naming it and the command that builds it. */
export function toolPath(name: string): string {
  const path = join(toolCacheDir(), 'bin', name);
  if (!existsSync(path)) {
    throw new Error(`required tool '${name}' not found at ${path}; run 'make deps' to build it`);
  }
  return path;
}

/**
 * The environment for programs we start: ours, less node_modules/.bin on PATH. npm
 * puts that first for scripts, and it holds executables that shadow system tools
 * (ava's dependency @vercel/nft installs an `nft`, which would hide nftables' nft
 * from the CNI plugins and the agent).
 */
export function systemEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const path = (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .filter((d) => d && !/node_modules\/\.bin\/?$/.test(d))
    .join(':');
  return { ...process.env, PATH: path, ...extra };
}
