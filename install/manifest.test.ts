import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import {
  COMBINED_MANIFEST,
  DEPLOY_DIR,
  MANIFEST_PARTS,
  readManifestParts,
  renderCombinedManifest,
} from './manifest.ts';

test('deploy/wiremesh.yaml is up to date with its parts (run `wiremesh manifest`)', async (t) => {
  const want = renderCombinedManifest(await readManifestParts());
  const have = readFileSync(join(DEPLOY_DIR, COMBINED_MANIFEST), 'utf8');
  t.true(have === want, "deploy/wiremesh.yaml is out of date: run './bin/wiremesh manifest'");
});

test('every part of deploy/ is in the combined manifest, once', (t) => {
  const files = readdirSync(DEPLOY_DIR).filter(
    (f) => f.endsWith('.yaml') && f !== COMBINED_MANIFEST,
  );
  // Manifests of features not shipped by default (e.g. AdminNetworkPolicy CRDs) may
  // sit beside the parts; every part listed must exist and be distinct.
  t.is(new Set(MANIFEST_PARTS).size, MANIFEST_PARTS.length);
  for (const p of MANIFEST_PARTS) t.true(files.includes(p), `deploy/${p} exists`);
});

test('the combined manifest holds exactly the parts’ objects, in order', (t) => {
  const kinds = (text: string) =>
    parseAllDocuments(text)
      .map((d) => d.toJSON() as { kind?: string; metadata?: { name?: string } } | null)
      .filter((o) => o !== null)
      .map((o) => `${o.kind}/${o.metadata?.name}`);
  const fromParts = MANIFEST_PARTS.flatMap((p) => kinds(readFileSync(join(DEPLOY_DIR, p), 'utf8')));
  const combined = kinds(readFileSync(join(DEPLOY_DIR, COMBINED_MANIFEST), 'utf8'));
  t.deepEqual(combined, fromParts);
  t.is(combined[0], 'CustomResourceDefinition/ippools.wiremesh.io');
  t.is(combined.at(-1), 'DaemonSet/wiremesh-agent');
});

test('the combined manifest holds no custom resource: one apply works on an empty cluster', (t) => {
  // kubectl maps each object's kind before the CRDs of the same apply are established.
  const docs = parseAllDocuments(readFileSync(join(DEPLOY_DIR, COMBINED_MANIFEST), 'utf8'))
    .map((d) => d.toJSON() as { apiVersion?: string; kind?: string } | null)
    .filter((o) => o !== null);
  const builtIn =
    /^(v1|(apps|rbac\.authorization\.k8s\.io|apiextensions\.k8s\.io|admissionregistration\.k8s\.io)\/v1)$/;
  for (const o of docs) t.regex(o.apiVersion ?? '', builtIn, `${o.kind} is not a built-in kind`);
});

test('a part that changes makes the combined manifest differ', (t) => {
  const parts = [
    { name: 'a.yaml', text: 'kind: A\n' },
    { name: 'b.yaml', text: '---\nkind: B\n' },
  ];
  const one = renderCombinedManifest(parts);
  t.regex(one, /# --- deploy\/a\.yaml\nkind: A\n---\n# --- deploy\/b\.yaml\nkind: B\n$/);
  t.not(renderCombinedManifest([parts[0]!, { name: 'b.yaml', text: 'kind: C\n' }]), one);
});
