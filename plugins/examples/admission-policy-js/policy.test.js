import { test } from "node:test";
import assert from "node:assert/strict";
import { imageAllowed, violation } from "./policy.js";

const pod = (labels, images) => ({
  metadata: { name: "p", labels },
  spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
});

test("images match by prefix, registry or repository", () => {
  assert.ok(imageAllowed("registry.local/app:1"));
  assert.ok(imageAllowed("busybox"));
  assert.ok(imageAllowed("busybox:1.36"));
  assert.ok(!imageAllowed("busyboxy"));
  assert.ok(!imageAllowed("docker.io/nginx"));
});

test("pods need the required labels and allowed images", () => {
  assert.equal(violation("pods", pod({ team: "a" }, ["busybox"])), null);
  assert.match(violation("pods", pod({}, ["busybox"])), /missing required label\(s\): team/);
  assert.match(violation("pods", pod({ team: "a" }, ["nginx:1"])), /image\(s\) not allowed: c0=nginx:1/);
});

test("workloads are judged by their pod template", () => {
  const d = { metadata: { name: "d" }, spec: { template: pod({ team: "x" }, ["evil/img"]) } };
  assert.match(violation("deployments.apps", d), /not allowed/);
  d.spec.template.spec.containers[0].image = "registry.local/img";
  assert.equal(violation("deployments.apps", d), null);
  assert.equal(violation("configmaps", { metadata: { name: "c" } }), null);
});
