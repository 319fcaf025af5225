// The policy routing that sends an encrypted pool's own traffic into WireGuard (see
// agent/paths.ts): routes in ENCRYPT_ROUTE_TABLE via the WireGuard device, and the
// `from POOL lookup ENCRYPT_ROUTE_TABLE` rules. Thin and idempotent like the path
// drivers: it touches only routes of ENCAP_ROUTE_PROTOCOL in that table and rules that
// look it up, so agent/meshdriver.ts (protocol 251, main table and table 51825) and
// this never remove each other's routes.
import type { IpClient, SourceRuleInfo } from '../sys/index.ts';
import { ENCAP_ROUTE_PROTOCOL, ENCRYPT_ROUTE_TABLE, WIREGUARD_DEVICE_NAME } from './constants.ts';
import { applyOwnedRoutes } from './routes.ts';

export interface SourceRoutingState {
  routes: { dst: string; dev: string; src?: string }[];
  rules: SourceRuleInfo[];
}

export interface SourceRoutingReport {
  routesReplaced: number;
  routesRemoved: number;
  rulesAdded: number;
  rulesRemoved: number;
}

export class SourceRoutingDriver {
  private readonly ip: IpClient;
  private readonly table: number;
  private readonly device: string;

  constructor(ip: IpClient, options: { table?: number; device?: string } = {}) {
    this.ip = ip;
    this.table = options.table ?? ENCRYPT_ROUTE_TABLE;
    this.device = options.device ?? WIREGUARD_DEVICE_NAME;
  }

  /**
   * Rules are removed before the routes they lead to and added after them, so an
   * encrypted pool never looks up a half-written table. While the WireGuard device is
   * missing its routes cannot exist: the rules then find nothing and fall through to
   * the main table, and the nftables drops keep a Required pool closed.
   * `keepRules` adds what is missing and removes no rule: for a caller that must have
   * new rules in place before other routes move and drop old ones only after.
   */
  async apply(
    state: SourceRoutingState,
    options: { keepRules?: boolean } = {},
  ): Promise<SourceRoutingReport> {
    const report = { routesReplaced: 0, routesRemoved: 0, rulesAdded: 0, rulesRemoved: 0 };
    for (const r of state.routes) {
      if (r.dev !== this.device)
        throw new Error(`encrypt-table route ${r.dst} not via ${this.device}`);
    }
    const key = (r: SourceRuleInfo) => `${r.family} ${r.from} ${r.priority}`;
    const want = new Map(state.rules.map((r) => [key(r), { ...r, table: this.table }]));
    const have = await this.ip.sourceRuleList(this.table);
    for (const r of have) {
      if (options.keepRules || want.has(key(r))) continue;
      await this.ip.sourceRuleDel(r);
      report.rulesRemoved++;
    }
    if (await this.ip.linkShow(this.device)) {
      const counts = await applyOwnedRoutes(
        this.ip,
        this.device,
        ENCAP_ROUTE_PROTOCOL,
        state.routes,
        this.table,
      );
      report.routesReplaced = counts.replaced;
      report.routesRemoved = counts.removed;
    }
    const haveKeys = new Set(have.map(key));
    for (const [k, r] of want) {
      if (haveKeys.has(k)) continue;
      await this.ip.sourceRuleAdd(r);
      report.rulesAdded++;
    }
    return report;
  }
}
