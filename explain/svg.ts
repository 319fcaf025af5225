// Reading back the SVG Graphviz's `dot` makes of `wiremesh graph`: each node and
// edge is a <g class="node|edge"> with a <title> (node name, or `a--b`), its label
// lines as <text> elements and its colour as the stroke of its first path. The
// graph's tests (unit and cluster) check the picture through this, not by eye.
export interface SvgItem {
  kind: 'node' | 'edge';
  title: string;
  texts: string[];
  stroke: string | undefined;
}

export function parseGraphSvg(svg: string): SvgItem[] {
  const decode = (t: string) =>
    t.replace(/&#45;/g, '-').replace(/&gt;/g, '>').replace(/&lt;/g, '<').replace(/&amp;/g, '&');
  return [...svg.matchAll(/<g id="[^"]+" class="(node|edge)">([\s\S]*?)<\/g>/g)].map(
    ([, kind, body = '']) => ({
      kind: kind === 'node' ? 'node' : 'edge',
      title: decode(/<title>([^<]*)<\/title>/.exec(body)?.[1] ?? ''),
      texts: [...body.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => decode(m[1] ?? '')),
      stroke: /<path[^>]*stroke="([^"]+)"/.exec(body)?.[1],
    }),
  );
}
