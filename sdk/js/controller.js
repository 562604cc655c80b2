// Writing a controller: pass `{ setup(config), reconcile(key) }` to
// `exportController` and re-export what it returns from the entry module:
//
//   import { exportController, spec, done } from "orchd-sdk/controller.js";
//   export const { setup, reconcile } = exportController({
//     setup: (config) => spec("configmaps"),
//     reconcile: (key) => done(),
//   });
//
// The host runs the informers and workqueue: `setup` once (what to watch),
// then `reconcile` with one key at a time. A thrown error is logged by the
// host and the key retried with backoff.

/** What a controller reconciles and watches (a builder, as in Rust). */
export class ControllerSpec {
  constructor(primary) {
    this.primary = primary;
    this.watches = [];
    this.concurrency = 1;
  }
  add(resource, mapTo) {
    this.watches.push({ resource, mapTo });
    return this;
  }
  /** Reconcile a changed object of `resource` under its own key. */
  watch(resource) {
    return this.add(resource, "self");
  }
  /** Reconcile its controlling owner of kind `ownerKind`. */
  watchOwned(resource, ownerKind) {
    return this.add(resource, `owner:${ownerKind}`);
  }
  /** Reconcile the primaries whose `spec.selector` matches it. */
  watchSelected(resource) {
    return this.add(resource, "selector");
  }
  /** Reconcile every primary when it changes. */
  watchAll(resource) {
    return this.add(resource, "all");
  }
  /** Keep `resource` in the host's cache for reads, queuing nothing. */
  read(resource) {
    return this.add(resource, "none");
  }
  /** Lets the host run up to `n` reconciles of different keys at once. */
  withConcurrency(n) {
    this.concurrency = Math.max(1, n | 0);
    return this;
  }
}

/** A spec reconciling `primary` (`deployments.apps`). */
export const spec = (primary) => new ControllerSpec(primary);
/** Done until something changes. */
export const done = () => ({ tag: "done" });
/** Reconcile the same key again after `ms` milliseconds. */
export const requeueAfter = (ms) => ({ tag: "requeue-after", val: Math.max(0, Math.round(ms)) });

function message(e) {
  return e && e.stack ? `${e}\n${e.stack}` : String(e);
}

/** The world's exports (`{ setup, reconcile }`) serving `controller`. */
export function exportController(controller) {
  return {
    setup(config) {
      let s;
      try {
        s = controller.setup(config);
      } catch (e) {
        throw message(e);
      }
      if (typeof s === "string") s = spec(s);
      return { primary: s.primary, watches: s.watches, concurrency: s.concurrency };
    },
    reconcile(key) {
      try {
        return controller.reconcile(key) ?? done();
      } catch (e) {
        throw message(e);
      }
    },
  };
}
