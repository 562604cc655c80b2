// Admission policy in JavaScript (componentize-qjs, QuickJS): pods and
// workloads (their pod template) must carry the labels in REQUIRED_LABELS
// and run only images from ALLOWED_IMAGES (policy.js); anything else is
// denied with a message naming what is wrong. Other resources pass.
// Capabilities: none (the admission world imports only `log`).
import { exportAdmission, allow, deny } from "orchd-sdk/admission.js";
import { debug } from "orchd-sdk/log.js";
import { violation } from "./policy.js";

export const { review } = exportAdmission((req) => {
  if (!req.object || req.operation === "delete") return allow();
  const why = violation(req.resource, req.object);
  if (why === null) return allow();
  debug(`denied ${req.resource} ${req.namespace ?? ""}/${req.name}: ${why}`);
  return deny(why);
});
