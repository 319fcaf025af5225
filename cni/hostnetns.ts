// Whether a CNI_NETNS path is the node's own network namespace. A runtime (or a
// mistaken client) passing /proc/self/ns/net, /proc/1/ns/net or a bind mount of the
// node's namespace would otherwise have the node's own namespace wired as a pod: its
// interface renamed and its default route replaced. Namespaces are compared by
// identity (the nsfs device and inode, what `stat` of the path reports), never by
// path, since any number of paths name one namespace. The node's namespaces are the
// agent's own (it runs on the node's network) and PID 1's (the node's init, through
// the host PID namespace), read once.
import { stat } from 'node:fs/promises';

export interface NetnsIdentity {
  dev: number;
  ino: number;
}

async function identity(path: string): Promise<NetnsIdentity | null> {
  try {
    const s = await stat(path);
    return { dev: s.dev, ino: s.ino };
  } catch {
    return null;
  }
}

/**
 * A check that says whether a path names one of `own` (default: this process's and
 * PID 1's network namespaces). A path that cannot be read is not the node's: the
 * wiring reports it missing.
 */
export function nodeNetnsCheck(
  own: readonly string[] = ['/proc/self/ns/net', '/proc/1/ns/net'],
): (path: string) => Promise<boolean> {
  let known: Promise<NetnsIdentity[]> | undefined;
  return async (path) => {
    known ??= Promise.all(own.map(identity)).then((ids) =>
      ids.filter((i): i is NetnsIdentity => i !== null),
    );
    const id = await identity(path);
    return id !== null && (await known).some((k) => k.dev === id.dev && k.ino === id.ino);
  };
}
