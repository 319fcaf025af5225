// Parsing of WireGuard endpoints from annotations (untrusted input): `ip:port`,
// `[ipv6]:port` or `dns-name:port`. Returns a canonical string or a reason.
import ipaddr from 'ipaddr.js';

export type EndpointParse =
  { ok: true; endpoint: string; host: string; port: number } | { ok: false; reason: string };

const DNS_NAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export function parseEndpoint(value: unknown): EndpointParse {
  if (typeof value !== 'string' || value === '') return { ok: false, reason: 'is empty' };
  if (value.length > 300) return { ok: false, reason: 'is too long' };
  let host: string;
  let portText: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0 || value[close + 1] !== ':') return { ok: false, reason: 'is not [IPv6]:port' };
    host = value.slice(1, close);
    portText = value.slice(close + 2);
    if (!ipaddr.IPv6.isValid(host)) {
      return { ok: false, reason: `has an invalid IPv6 address '${host}'` };
    }
    host = ipaddr.IPv6.parse(host).toString();
  } else {
    const colon = value.lastIndexOf(':');
    if (colon <= 0) return { ok: false, reason: 'has no port (expected host:port)' };
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(':')) return { ok: false, reason: 'has an IPv6 address without brackets' };
    if (/^[0-9.]+$/.test(host)) {
      if (!ipaddr.IPv4.isValidFourPartDecimal(host))
        return { ok: false, reason: `has an invalid IPv4 address '${host}'` };
      host = ipaddr.IPv4.parse(host).toString();
    } else if (!DNS_NAME.test(host)) {
      return { ok: false, reason: `has an invalid host name '${host.slice(0, 64)}'` };
    }
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return { ok: false, reason: 'has an invalid port' };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, reason: 'has a port outside 1-65535' };
  const endpoint = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return { ok: true, endpoint, host, port };
}

export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
