// Writing a scheduler: pass `{ name, schedule(pod, nodes) }` to
// `exportScheduler` and re-export what it returns from the entry module:
//
//   import { exportScheduler, bind, unschedulable } from "orchd-sdk/scheduler.js";
//   export const { schedulerName, update, schedule } = exportScheduler({
//     name: "first-fit",
//     schedule: (pod, nodes) => { const n = nodes.find((n) => n.fits(pod)); return n ? bind(n.name) : unschedulable([]); },
//   });
//
// As in the Rust SDK, the SDK keeps the cluster view the host feeds it
// (nodes, and pods placed on them with their requests added up); a pod it
// binds counts on its node at once.

const add = (a, b) => ({
  milliCpu: a.milliCpu + b.milliCpu,
  memoryBytes: a.memoryBytes + b.memoryBytes,
  pods: a.pods + b.pods,
});
const sub = (a, b) => ({
  milliCpu: Math.max(0, a.milliCpu - b.milliCpu),
  memoryBytes: Math.max(0, a.memoryBytes - b.memoryBytes),
  pods: Math.max(0, a.pods - b.pods),
});

/** A node with what is placed on it. */
export class NodeInfo {
  constructor(node) {
    this.name = node.name;
    this.pods = [];
    this.set(node);
  }
  set(node) {
    this.labels = Object.fromEntries(node.labels.map((l) => [l.key, l.value]));
    this.allocatable = node.allocatable;
    this.taints = node.taints;
    this.unschedulable = node.unschedulable;
    this.ready = node.ready;
    this.addUp();
  }
  addUp() {
    this.requested = this.pods.reduce((r, p) => add(r, p.requests), { milliCpu: 0, memoryBytes: 0, pods: 0 });
  }
  /** Allocatable minus what is requested. */
  free() {
    return sub(this.allocatable, this.requested);
  }
  /** Whether `pod`'s requests fit in what is free. */
  fits(pod) {
    const f = this.free();
    const r = pod.requests;
    return r.milliCpu <= f.milliCpu && r.memoryBytes <= f.memoryBytes && Math.max(1, r.pods) <= f.pods;
  }
}

/** The scheduler's view of the cluster. */
export class Cluster {
  constructor() {
    this.nodes = new Map();
    this.placements = new Map();
    this.waiting = new Map();
  }
  apply(change) {
    switch (change.tag) {
      case "node-set": {
        const cur = this.nodes.get(change.val.name);
        if (cur) cur.set(change.val);
        else {
          const n = new NodeInfo(change.val);
          n.pods = this.waiting.get(n.name) || [];
          this.waiting.delete(n.name);
          n.addUp();
          this.nodes.set(n.name, n);
        }
        break;
      }
      case "node-removed": {
        const n = this.nodes.get(change.val);
        this.nodes.delete(change.val);
        if (n && n.pods.length) this.waiting.set(n.name, n.pods);
        break;
      }
      case "pod-placed":
        this.place(change.val);
        break;
      case "pod-removed":
        this.remove(change.val);
        break;
    }
  }
  place(pod) {
    this.remove(pod.key);
    this.placements.set(pod.key, pod.node);
    const n = this.nodes.get(pod.node);
    if (n) {
      n.pods.push(pod);
      n.addUp();
    } else {
      this.waiting.set(pod.node, [...(this.waiting.get(pod.node) || []), pod]);
    }
  }
  remove(key) {
    const name = this.placements.get(key);
    if (name === undefined) return;
    this.placements.delete(key);
    const n = this.nodes.get(name);
    if (n) {
      n.pods = n.pods.filter((p) => p.key !== key);
      n.addUp();
    } else {
      const rest = (this.waiting.get(name) || []).filter((p) => p.key !== key);
      if (rest.length) this.waiting.set(name, rest);
      else this.waiting.delete(name);
    }
  }
}

/** Bind the pod to `node`. */
export const bind = (node) => ({ tag: "bind", val: node });
/** No node fits: `[node, reason]` pairs in Kubernetes' words. */
export const unschedulable = (rejections) => ({
  tag: "unschedulable",
  val: rejections.map(([node, reason]) => ({ node, reason })),
});

/** The world's exports serving `scheduler` (`{ name, schedule(pod, nodes) }`). */
export function exportScheduler(scheduler) {
  let cluster = new Cluster();
  return {
    schedulerName: () => scheduler.name,
    update(changes, reset) {
      if (reset) cluster = new Cluster();
      for (const c of changes) cluster.apply(c);
    },
    schedule(pods) {
      const nodes = [...cluster.nodes.values()];
      return pods.map((pod) => {
        const d = scheduler.schedule(pod, nodes);
        if (d.tag === "bind") {
          cluster.place({
            key: `${pod.namespace}/${pod.name}`,
            node: d.val,
            namespace: pod.namespace,
            labels: pod.labels,
            ownerUid: pod.ownerUid,
            requests: { ...pod.requests, pods: Math.max(1, pod.requests.pods) },
            hostPorts: pod.hostPorts,
          });
        }
        return d;
      });
    },
  };
}
