// A controller in JavaScript (componentize-qjs, QuickJS): copies every
// ConfigMap labelled `orchd.dev/replicate=true` into every namespace, and
// keeps the copies in line with it.
//
// It reconciles ConfigMaps; a Namespace change queues every ConfigMap
// (`map-to: all`), so a new namespace gets its copies. For a source it
// creates the missing copies and updates stale ones; a copy's change, or
// a source losing its label or going away, brings the copies back in line
// (a copy deleted by hand comes back, copies of a gone source go). A
// ConfigMap of the same name that is not a copy is never overwritten: a
// Warning Event on the source says where.
//
// Configuration (optional JSON): `{"exclude": ["kube-system"]}`.
// Capabilities: read `configmaps`, `namespaces`; write `configmaps`.
import { exportController, spec, done } from "orchd-sdk/controller.js";
import * as objects from "orchd-sdk/objects.js";
import * as events from "orchd-sdk/events.js";
import { info } from "orchd-sdk/log.js";
import { COPY_LABEL, SOURCE_LABEL, isSource, orphans, parseConfig, plan, sourceOf } from "./replicate.js";

const CONFIGMAPS = "configmaps";
let config = { exclude: [] };

/** The object at `ref`, or null if there is none. */
function find(ref) {
  try {
    return objects.get(ref);
  } catch (e) {
    if (e instanceof objects.ApiError && e.isNotFound()) return null;
    throw e;
  }
}

/** Deletes the object at `ref`; already gone is fine. */
function remove(ref) {
  try {
    objects.del(ref);
  } catch (e) {
    if (!(e instanceof objects.ApiError && e.isNotFound())) throw e;
  }
}

/** Brings the copies of the source `namespace/name` in line with it. */
function reconcileSource(namespace, name) {
  const sourceRef = objects.ref(CONFIGMAPS, namespace, name);
  const source = find(sourceRef);
  const namespaces = objects.list("namespaces");
  const copies = objects.list(CONFIGMAPS, null, `${COPY_LABEL}=true`);
  for (const stale of orphans(namespace, name, source, copies, namespaces, config.exclude)) {
    remove(objects.refOf(CONFIGMAPS, stale));
    info(`deleted ${stale.metadata.namespace}/${name}: no longer a copy of ${namespace}/${name}`);
  }
  if (!source || !isSource(source)) return;
  const existing = namespaces
    .map((ns) => find(objects.ref(CONFIGMAPS, ns.metadata.name, name)))
    .filter((cm) => cm !== null);
  const todo = plan(source, namespaces, existing, config.exclude);
  for (const copy of todo.create) objects.create(CONFIGMAPS, copy);
  for (const copy of todo.update) objects.update(CONFIGMAPS, copy);
  const changed = [...todo.create, ...todo.update].map((c) => c.metadata.namespace);
  if (changed.length > 0) {
    events.normal(sourceRef, "Replicated", `copied into namespace(s) ${changed.join(", ")}`);
  }
  if (todo.blocked.length > 0) {
    events.warning(
      sourceRef,
      "ReplicationBlocked",
      `not copied into namespace(s) ${todo.blocked.join(", ")}: a ConfigMap named ${name} that is not a copy exists there`,
    );
  }
}

export const { setup, reconcile } = exportController({
  setup(text) {
    config = parseConfig(text);
    return spec(CONFIGMAPS).watchAll("namespaces");
  },
  reconcile(key) {
    const cm = find(key);
    const from = cm && sourceOf(cm);
    if (from) {
      // A copy changed: its source decides what it should be.
      const slash = from.indexOf("/");
      reconcileSource(from.slice(0, slash), from.slice(slash + 1));
      return done();
    }
    reconcileSource(key.namespace, key.name);
    if (!cm || !isSource(cm)) {
      // Perhaps a copy, or a ConfigMap in a copy's way, went away: the
      // sources of that name elsewhere put theirs back.
      for (const other of objects.list(CONFIGMAPS, null, `${SOURCE_LABEL}=true`)) {
        if (other.metadata.name === key.name && other.metadata.namespace !== key.namespace) {
          reconcileSource(other.metadata.namespace, other.metadata.name);
        }
      }
    }
    return done();
  },
});
