// The policy itself, pure (no host calls): unit-tested natively with
// `node --test` (policy.test.js).

/** Labels every pod (and every workload's pod template) must carry. */
export const REQUIRED_LABELS = ["team"];
/** Image prefixes pods may run; anything else is denied. */
export const ALLOWED_IMAGES = ["registry.local/", "busybox"];

/** The pod spec and labels a resource carries: a pod's own, or a
 * workload's pod template. */
function podParts(resource, object) {
  if (resource === "pods") return { labels: object.metadata?.labels, spec: object.spec };
  const template = object.spec?.jobTemplate?.spec?.template ?? object.spec?.template;
  if (!template) return null;
  return { labels: { ...(object.metadata?.labels ?? {}), ...(template.metadata?.labels ?? {}) }, spec: template.spec };
}

/** Whether `image` starts with an allowed prefix (`busybox` allows
 * `busybox`, `busybox:1.36`, not `busyboxy`). */
export function imageAllowed(image) {
  return ALLOWED_IMAGES.some((p) =>
    p.endsWith("/") ? image.startsWith(p) : image === p || image.startsWith(p + ":") || image.startsWith(p + "@"),
  );
}

/** Why `object` (of `resource`) is refused, or null to allow it. */
export function violation(resource, object) {
  const parts = podParts(resource, object);
  if (!parts) return null;
  const labels = parts.labels ?? {};
  const missing = REQUIRED_LABELS.filter((l) => !labels[l]);
  if (missing.length) return `missing required label(s): ${missing.join(", ")}`;
  const containers = [...(parts.spec?.initContainers ?? []), ...(parts.spec?.containers ?? [])];
  const bad = containers.filter((c) => !imageAllowed(c.image ?? ""));
  if (bad.length) {
    return `image(s) not allowed: ${bad.map((c) => `${c.name}=${c.image}`).join(", ")} (allowed: ${ALLOWED_IMAGES.join(", ")})`;
  }
  return null;
}
