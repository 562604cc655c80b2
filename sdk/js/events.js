// Kubernetes Events about objects (controllers only), deduplicated by the host.
import wit from "orchd:plugin/events@0.1.0";

/** Records an Event about `regarding` (`{ resource, namespace, name }`). */
export function record(regarding, type, reason, message) {
  wit.record(regarding, type, reason, message);
}
/** Records a `Normal` Event. */
export const normal = (regarding, reason, message) => record(regarding, "normal", reason, message);
/** Records a `Warning` Event. */
export const warning = (regarding, reason, message) => record(regarding, "warning", reason, message);
