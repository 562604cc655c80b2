// The replicator's decisions, pure (no host calls): unit-tested natively
// with `node --test` (replicate.test.js). app.js does the reads and writes.

/** A ConfigMap carrying this label (value `true`) is a source: it is
 * copied into every namespace. */
export const SOURCE_LABEL = "orchd.dev/replicate";
/** Every copy carries this label, so copies are listed in one call. */
export const COPY_LABEL = "orchd.dev/replica";
/** On a copy: `NAMESPACE/NAME` of its source. An annotation, not a label:
 * a label value is limited to 63 characters, a namespace plus a name is
 * not. */
export const FROM_ANNOTATION = "orchd.dev/replicated-from";

const meta = (o) => o?.metadata ?? {};

/** Whether `cm` is a source to replicate (and not itself a copy). */
export function isSource(cm) {
  const m = meta(cm);
  return !m.deletionTimestamp && m.labels?.[SOURCE_LABEL] === "true" && !sourceOf(cm);
}

/** `NAMESPACE/NAME` of the source `cm` is a copy of, or null. */
export function sourceOf(cm) {
  return meta(cm).annotations?.[FROM_ANNOTATION] ?? null;
}

/** Namespaces that should hold a copy of `source`: every one but its
 * own, those going away and those the configuration excludes. */
export function targetNamespaces(source, namespaces, exclude = []) {
  const own = meta(source).namespace;
  return namespaces
    .filter((ns) => !meta(ns).deletionTimestamp && ns.status?.phase !== "Terminating")
    .map((ns) => meta(ns).name)
    .filter((name) => name !== own && !exclude.includes(name))
    .sort();
}

/** The copy of `source` to have in `namespace`. Labels other than the
 * source label and the copy's own bookkeeping travel with it. */
export function desiredCopy(source, namespace) {
  const m = meta(source);
  const labels = { ...(m.labels ?? {}) };
  delete labels[SOURCE_LABEL];
  labels[COPY_LABEL] = "true";
  const copy = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: m.name,
      namespace,
      labels,
      annotations: { [FROM_ANNOTATION]: `${m.namespace}/${m.name}` },
    },
  };
  if (source.data) copy.data = { ...source.data };
  if (source.binaryData) copy.binaryData = { ...source.binaryData };
  return copy;
}

const same = (a, b) => JSON.stringify(sorted(a ?? {})) === JSON.stringify(sorted(b ?? {}));
const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** Whether `existing` (a copy) already matches `desired`. */
export function upToDate(existing, desired) {
  const e = meta(existing);
  const d = meta(desired);
  return (
    same(existing.data, desired.data) &&
    same(existing.binaryData, desired.binaryData) &&
    same(e.labels, d.labels) &&
    e.annotations?.[FROM_ANNOTATION] === d.annotations[FROM_ANNOTATION]
  );
}

/**
 * What to do for `source` (a source ConfigMap), given the namespaces and
 * the ConfigMaps of its name found in them (`existing`, any namespace):
 * `{ create: [copy], update: [copy], blocked: [namespace] }`. An update
 * carries the existing copy's resourceVersion, so a concurrent change
 * conflicts and the key is retried. A ConfigMap of that name which is not
 * a copy of this source is never touched: its namespace is `blocked`.
 */
export function plan(source, namespaces, existing, exclude = []) {
  const want = `${meta(source).namespace}/${meta(source).name}`;
  const byNamespace = new Map(existing.map((cm) => [meta(cm).namespace, cm]));
  const out = { create: [], update: [], blocked: [] };
  for (const ns of targetNamespaces(source, namespaces, exclude)) {
    const desired = desiredCopy(source, ns);
    const have = byNamespace.get(ns);
    if (!have) {
      out.create.push(desired);
    } else if (sourceOf(have) !== want) {
      out.blocked.push(ns);
    } else if (!upToDate(have, desired)) {
      const m = meta(have);
      desired.metadata.resourceVersion = m.resourceVersion;
      desired.metadata.uid = m.uid;
      // Annotations others put on the copy stay (kubectl's, say).
      desired.metadata.annotations = { ...(m.annotations ?? {}), ...desired.metadata.annotations };
      out.update.push(desired);
    }
  }
  return out;
}

/** Copies (from `copies`, every ConfigMap labelled as a copy) of the
 * source `namespace/name` that should go: the source is gone or no longer
 * labelled, so `sourceNow` is null or not a source; or the copy sits in a
 * namespace that no longer wants one. */
export function orphans(namespace, name, sourceNow, copies, namespaces, exclude = []) {
  const want = `${namespace}/${name}`;
  const mine = copies.filter((cm) => sourceOf(cm) === want && !meta(cm).deletionTimestamp);
  if (!sourceNow || !isSource(sourceNow)) return mine;
  const targets = new Set(targetNamespaces(sourceNow, namespaces, exclude));
  return mine.filter((cm) => !targets.has(meta(cm).namespace));
}

/** The plugin's configuration: `{"exclude": ["kube-system", ...]}` (JSON,
 * optional). Throws on anything else, so a bad configuration refuses the
 * revision rather than running with a guess. */
export function parseConfig(text) {
  if (!text || !text.trim()) return { exclude: [] };
  const c = JSON.parse(text);
  const exclude = c.exclude ?? [];
  if (!Array.isArray(exclude) || exclude.some((n) => typeof n !== "string")) {
    throw new Error(`config: "exclude" must be a list of namespace names, not ${JSON.stringify(exclude)}`);
  }
  return { exclude };
}
