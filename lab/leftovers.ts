// What a lab leaves on the machine: `down` must leave this empty, and the tests
// check that it does (and that it is not empty while the lab runs).
import { existsSync } from 'node:fs';
import { defaultRunner, type Runner } from '../sys/index.ts';
import { LAB_ROOT_RUN, labOwnsNetns, labOwnsLink } from './plan.ts';
import { listNetns, listLinks, listMountPoints } from './nodes.ts';
import { isAlive, type ProcRecord } from './procs.ts';

export async function labLeftovers(
  name: string,
  pids: readonly ProcRecord[],
  runner: Runner = defaultRunner,
): Promise<string[]> {
  const found: string[] = [];
  for (const ns of await listNetns(runner)) if (labOwnsNetns(name, ns)) found.push(`netns ${ns}`);
  for (const link of await listLinks(runner))
    if (labOwnsLink(name, link)) found.push(`link ${link}`);
  for (const m of await listMountPoints()) {
    const netns = m.startsWith('/run/netns/') && labOwnsNetns(name, m.slice('/run/netns/'.length));
    if (netns || m.startsWith(`${LAB_ROOT_RUN}/${name}/`)) found.push(`mount ${m}`);
  }
  for (const p of pids) if (isAlive(p)) found.push(`process ${p.name} (pid ${p.pid})`);
  if (existsSync(`${LAB_ROOT_RUN}/${name}`)) found.push(`directory ${LAB_ROOT_RUN}/${name}`);
  return found;
}
