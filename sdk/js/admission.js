// Writing an admission policy: pass a `review(request)` function to
// `exportAdmission` and re-export what it returns from the entry module:
//
//   import { exportAdmission, allow, deny } from "orchd-sdk/admission.js";
//   export const { review } = exportAdmission((req) => req.object ? allow() : deny("no object"));
//
// The API calls `review` in its write path with a deadline and the Plugin's
// failure policy (a thrown error or a trap follows it).

/** Allows the request. */
export function allow() {
  return new Response(true, "");
}

/** Denies the request; `message` is shown to the user. */
export function deny(message) {
  return new Response(false, String(message));
}

/** An admission answer; build it with `allow()` or `deny(message)`. */
export class Response {
  constructor(allowed, message) {
    this.allowed = allowed;
    this.message = message;
    this.patch = null;
    this.warnings = [];
  }
  /** Mutates the object by a JSON patch (RFC 6902): mutating plugins only. */
  withPatch(operations) {
    this.patch = operations;
    return this;
  }
  /** Adds a warning shown to the client. */
  withWarning(warning) {
    this.warnings.push(String(warning));
    return this;
  }
}

/** The request with `object` and `oldObject` parsed from JSON text. */
export function parseRequest(raw) {
  return {
    ...raw,
    object: raw.object == null ? null : JSON.parse(raw.object),
    oldObject: raw.oldObject == null ? null : JSON.parse(raw.oldObject),
    raw,
  };
}

/** The world's exports (`{ review }`) serving `review(request) -> Response`. */
export function exportAdmission(review) {
  return {
    review(raw) {
      const r = review(parseRequest(raw));
      return {
        allowed: !!r.allowed,
        message: r.message || "",
        patch: r.patch == null ? null : JSON.stringify(r.patch),
        warnings: r.warnings || [],
      };
    },
  };
}
