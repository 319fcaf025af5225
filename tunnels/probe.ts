// Availability probes: create a throwaway link of the kind and delete it at once, so a
// missing kernel module is found at start-up and said plainly (on this project's test
// machines: no WireGuard and no IP-in-IP module; VXLAN is built in). A leftover probe
// link from a crashed agent is removed first; the probe names are wiremesh's own.
import type { IpClient } from '../sys/index.ts';
import type { Availability, EncapsulationKind } from './encapsulation.ts';

/** The kernel's words for "no such link kind", from `ip link add ... type KIND`. */
const MISSING_KIND = /Unknown device type|Operation not supported|not supported/i;

export async function probeLinkKind(
  ip: IpClient,
  kind: EncapsulationKind,
  probeName: string,
  create: () => Promise<void>,
): Promise<Availability> {
  if (await ip.linkShow(probeName)) await ip.linkDelete(probeName);
  try {
    await create();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (MISSING_KIND.test(message)) {
      return {
        kind,
        available: false,
        detail: `the kernel has no ${kind} support (module missing): 'ip link add type ${kind}' says ${lastLine(message)}`,
      };
    }
    if (/File exists/i.test(message)) {
      // Another link of this kind with the same parameters: the kind itself exists.
      return { kind, available: true, detail: 'kernel (a link with these parameters exists)' };
    }
    return { kind, available: false, detail: `cannot create a ${kind} link: ${message}` };
  }
  await ip.linkDelete(probeName).catch(() => {});
  return { kind, available: true, detail: 'kernel' };
}

function lastLine(message: string): string {
  const m = /(Error: [^\n]*|RTNETLINK answers: [^\n]*)/.exec(message);
  return m?.[1]?.trim() ?? message.trim();
}
