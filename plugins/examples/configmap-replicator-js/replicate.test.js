import { test } from "node:test";
import assert from "node:assert/strict";
import { FROM_ANNOTATION, desiredCopy, isSource, orphans, parseConfig, plan, targetNamespaces } from "./replicate.js";

const ns = (name, extra = {}) => ({ metadata: { name, ...extra } });
const source = (data = { a: "1" }) => ({
  metadata: { name: "shared", namespace: "default", labels: { "orchd.dev/replicate": "true", app: "x" } },
  data,
});
const copyIn = (namespace, data = { a: "1" }, rv = "7") => ({
  ...desiredCopy(source(data), namespace),
  metadata: { ...desiredCopy(source(data), namespace).metadata, resourceVersion: rv },
});
const NAMESPACES = [ns("default"), ns("a"), ns("b"), ns("gone", { deletionTimestamp: "2026-01-01T00:00:00Z" })];

test("a source goes to every other live, not excluded namespace", () => {
  assert.deepEqual(targetNamespaces(source(), NAMESPACES), ["a", "b"]);
  assert.deepEqual(targetNamespaces(source(), NAMESPACES, ["b"]), ["a"]);
  assert.deepEqual(targetNamespaces(source(), [...NAMESPACES, { metadata: { name: "t" }, status: { phase: "Terminating" } }]), ["a", "b"]);
});

test("copies carry the data and labels, not the source label, and say where they come from", () => {
  const c = desiredCopy(source(), "a");
  assert.deepEqual(c.data, { a: "1" });
  assert.deepEqual(c.metadata.labels, { app: "x", "orchd.dev/replica": "true" });
  assert.equal(c.metadata.annotations[FROM_ANNOTATION], "default/shared");
  assert.ok(!isSource(c), "a copy is never a source, or copies would multiply");
  assert.ok(isSource(source()));
});

test("plan creates the missing, updates the stale, leaves foreign ConfigMaps alone", () => {
  const foreign = { metadata: { name: "shared", namespace: "b" }, data: { mine: "yes" } };
  let p = plan(source(), NAMESPACES, [foreign]);
  assert.deepEqual(p.create.map((c) => c.metadata.namespace), ["a"]);
  assert.deepEqual(p.blocked, ["b"]);
  assert.equal(p.update.length, 0);

  p = plan(source({ a: "2" }), NAMESPACES, [copyIn("a"), copyIn("b", { a: "2" })]);
  assert.deepEqual(p.update.map((c) => [c.metadata.namespace, c.metadata.resourceVersion, c.data.a]), [["a", "7", "2"]]);
  assert.equal(p.create.length + p.blocked.length, 0);

  // A key removed from the source is removed from the copy.
  p = plan(source({}), NAMESPACES, [copyIn("a"), copyIn("b", {})]);
  assert.deepEqual(p.update.map((c) => [c.metadata.namespace, c.data]), [["a", {}]]);
});

test("copies of a source gone, unlabelled or no longer wanted are orphans", () => {
  const copies = [copyIn("a"), copyIn("b"), { metadata: { name: "other", namespace: "a", annotations: { [FROM_ANNOTATION]: "default/other" } } }];
  assert.deepEqual(orphans("default", "shared", null, copies, NAMESPACES).map((c) => c.metadata.namespace), ["a", "b"]);
  const unlabelled = { ...source(), metadata: { ...source().metadata, labels: {} } };
  assert.equal(orphans("default", "shared", unlabelled, copies, NAMESPACES).length, 2);
  assert.deepEqual(orphans("default", "shared", source(), copies, NAMESPACES, ["b"]).map((c) => c.metadata.namespace), ["b"]);
  assert.equal(orphans("default", "shared", source(), copies, NAMESPACES).length, 0);
});

test("configuration is optional JSON with a list of excluded namespaces", () => {
  assert.deepEqual(parseConfig(""), { exclude: [] });
  assert.deepEqual(parseConfig('{"exclude": ["kube-system"]}'), { exclude: ["kube-system"] });
  assert.throws(() => parseConfig('{"exclude": "kube-system"}'), /must be a list/);
  assert.throws(() => parseConfig("{"));
});
