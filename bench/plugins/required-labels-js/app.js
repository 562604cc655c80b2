// The Rust example plugins/examples/required-labels, ported line for line
// to JavaScript (componentize-qjs) for `cargo xtask bench plugins`: pods
// and Deployments must carry a non-empty `owner` label; the denial names
// what is missing, in the same words.
import { exportAdmission, allow, deny } from "orchd-sdk/admission.js";

const REQUIRED = ["owner"];
const REVIEWED = ["pods", "deployments.apps"];

const missing = (object, required) => {
  const labels = object?.metadata?.labels ?? {};
  return required.filter((l) => typeof labels[l] !== "string" || labels[l] === "");
};

function message(resource, name, absent) {
  const kind = resource.split(".")[0];
  const labels = absent.map((l) => `"${l}"`).join(", ");
  const fields = absent.map((l) => `metadata.labels.${l}`).join(", ");
  const noun = absent.length === 1 ? "label" : "labels";
  return `${kind} "${name}" is missing the required ${noun} ${labels} (set ${fields})`;
}

export const { review } = exportAdmission((req) => {
  if (!REVIEWED.includes(req.resource) || req.subResource != null) return allow();
  if (!req.object) return allow();
  const absent = missing(req.object, REQUIRED);
  return absent.length === 0 ? allow() : deny(message(req.resource, req.name, absent));
});
