// Object access for controllers, checked against the plugin's capabilities
// on every call. Objects cross as JSON text; here they are plain objects.
// A failed call throws an `ApiError`.
import wit from "orchd:plugin/objects@0.1.0";

/** A host call failed; `kind` is `not-found`, `conflict`, `invalid`,
 * `forbidden` or `internal`, as the Kubernetes API would say it. */
export class ApiError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.kind = kind;
  }
  isNotFound() {
    return this.kind === "not-found";
  }
  isConflict() {
    return this.kind === "conflict";
  }
}

function call(f) {
  try {
    return f();
  } catch (e) {
    // componentize-qjs throws a WIT `result`'s error as an Error whose
    // `payload` is the `error` variant, `{ tag, val }`.
    const v = e && typeof e === "object" && "payload" in e ? e.payload : e;
    if (v && typeof v === "object" && typeof v.tag === "string") {
      throw new ApiError(v.tag, String(v.val));
    }
    throw e;
  }
}

/** Where an object lives: `{ resource, namespace, name }`. */
export function ref(resource, namespace, name) {
  return { resource, namespace: namespace ?? null, name };
}

/** The reference of `object`, an object of `resource`. */
export function refOf(resource, object) {
  const m = object.metadata || {};
  return ref(resource, m.namespace, m.name);
}

/** The object at `key`. */
export const get = (key) => JSON.parse(call(() => wit.get(key)));
/** Objects of `resource`, optionally in one namespace and matching a label selector string. */
export const list = (resource, namespace = null, labelSelector = "") =>
  call(() => wit.list(resource, namespace, labelSelector)).map((o) => JSON.parse(o));
/** Creates `object`; returns it as stored. */
export const create = (resource, object) => JSON.parse(call(() => wit.create(resource, JSON.stringify(object))));
/** Replaces `object` (its resourceVersion is a precondition). */
export const update = (resource, object) => JSON.parse(call(() => wit.update(resource, JSON.stringify(object))));
/** Replaces `object`'s status. */
export const updateStatus = (resource, object) =>
  JSON.parse(call(() => wit.updateStatus(resource, JSON.stringify(object))));
/** Applies a JSON merge patch (RFC 7386) to the object at `key`. */
export const patch = (key, mergePatch) => JSON.parse(call(() => wit.patch(key, JSON.stringify(mergePatch))));
/** Deletes the object at `key`. */
export const del = (key) => call(() => wit.delete(key));
