use super::affinity::RequiredAffinity;
use super::filter::{self, reasons};
use super::score::{self, Weights};
use super::*;

const GI: u64 = 1 << 30;

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: vec![Label::new("kubernetes.io/hostname", name)],
        allocatable: Resources {
            milli_cpu: 4000,
            memory_bytes: 8 * GI,
            pods: 110,
        },
        ready: true,
        ..Default::default()
    }
}

fn with_labels(mut n: NodeInfo, labels: &[(&str, &str)]) -> NodeInfo {
    n.labels
        .extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
    n
}

fn pod(name: &str) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        requests: Resources {
            milli_cpu: 100,
            memory_bytes: GI / 8,
            pods: 1,
        },
        ..Default::default()
    }
}

fn placed(labels: &[(&str, &str)], owner: Option<&str>) -> PlacedPod {
    PlacedPod {
        namespace: "default".into(),
        labels: labels.iter().map(|(k, v)| Label::new(*k, *v)).collect(),
        owner_uid: owner.map(str::to_owned),
        ..Default::default()
    }
}

fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
    SelectorRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn term(reqs: Vec<SelectorRequirement>) -> SelectorTerm {
    SelectorTerm { requirements: reqs }
}

fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
    Taint {
        key: key.into(),
        value: value.into(),
        effect,
    }
}

fn toleration(
    key: &str,
    operator: TolerationOperator,
    value: &str,
    effect: Option<TaintEffect>,
) -> Toleration {
    Toleration {
        key: key.into(),
        operator,
        value: value.into(),
        effect,
    }
}

fn affinity_term(app: &str, topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: term(vec![req("app", SelectorOperator::In, &[app])]),
        namespaces: Vec::new(),
        topology_key: topology_key.into(),
    }
}

/// The one node's filter result.
fn check(pod: &PodInfo, node: &NodeInfo) -> Result<(), String> {
    let nodes = std::slice::from_ref(node);
    let required = RequiredAffinity::new(pod, nodes);
    filter::filter(pod, node, &required).map_err(|e| e.into_owned())
}

/// The reasons of an unschedulable decision, per node.
fn rejections(decision: Decision) -> Vec<(String, String)> {
    match decision {
        Decision::Unschedulable(r) => r.into_iter().map(|r| (r.node, r.reason)).collect(),
        Decision::Bind(n) => panic!("expected unschedulable, bound to {n}"),
    }
}

fn bound(decision: Decision) -> String {
    match decision {
        Decision::Bind(n) => n,
        Decision::Unschedulable(r) => panic!("expected a binding, got {r:?}"),
    }
}

// ---- filters ------------------------------------------------------------

#[test]
fn node_name_filter() {
    let mut p = pod("p");
    p.node_name = Some("b".into());
    assert_eq!(check(&p, &node("a")), Err(reasons::NODE_NAME.into()));
    assert_eq!(check(&p, &node("b")), Ok(()));
    assert_eq!(bound(schedule(&p, &[node("a"), node("b"), node("c")])), "b");
}

#[test]
fn unschedulable_node_unless_tolerated() {
    let mut n = node("a");
    n.unschedulable = true;
    let mut p = pod("p");
    assert_eq!(check(&p, &n), Err("node(s) were unschedulable".into()));
    p.tolerations.push(toleration(
        filter::UNSCHEDULABLE_TAINT,
        TolerationOperator::Exists,
        "",
        Some(TaintEffect::NoSchedule),
    ));
    assert_eq!(check(&p, &n), Ok(()));
}

#[test]
fn not_ready_node_is_tainted_not_ready() {
    let mut n = node("a");
    n.ready = false;
    let mut p = pod("p");
    assert_eq!(
        check(&p, &n),
        Err("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into())
    );
    p.tolerations.push(toleration(
        filter::NOT_READY_TAINT,
        TolerationOperator::Exists,
        "",
        None,
    ));
    assert_eq!(check(&p, &n), Ok(()));
}

#[test]
fn insufficient_cpu_memory_and_pods() {
    let mut n = node("a");
    n.requested = Resources {
        milli_cpu: 3950,
        memory_bytes: 8 * GI - 1,
        pods: 109,
    };
    let mut p = pod("p");
    assert_eq!(check(&p, &n), Err("Insufficient cpu".into()));
    p.requests.milli_cpu = 50;
    assert_eq!(check(&p, &n), Err("Insufficient memory".into()));
    p.requests.memory_bytes = 1;
    assert_eq!(check(&p, &n), Ok(()));
    n.requested.pods = 110;
    assert_eq!(check(&p, &n), Err("Too many pods".into()));
}

#[test]
fn zero_requests_fit_an_overcommitted_node() {
    let mut n = node("a");
    n.requested.milli_cpu = 5000;
    let mut p = pod("p");
    p.requests.milli_cpu = 0;
    assert_eq!(check(&p, &n), Ok(()));
}

#[test]
fn node_selector_filter() {
    let n = with_labels(node("a"), &[("disk", "ssd")]);
    let mut p = pod("p");
    p.node_selector = vec![Label::new("disk", "ssd")];
    assert_eq!(check(&p, &n), Ok(()));
    p.node_selector = vec![Label::new("disk", "hdd")];
    assert_eq!(
        check(&p, &n),
        Err("node(s) didn't match Pod's node affinity/selector".into())
    );
}

#[test]
fn required_node_affinity_ors_terms_and_ands_requirements() {
    let n = with_labels(node("a"), &[("zone", "z1"), ("gen", "5")]);
    let mut p = pod("p");
    p.required_node_affinity = vec![
        term(vec![req("zone", SelectorOperator::In, &["z2"])]),
        term(vec![
            req("zone", SelectorOperator::In, &["z1", "z3"]),
            req("gen", SelectorOperator::Gt, &["4"]),
        ]),
    ];
    assert_eq!(check(&p, &n), Ok(()));
    p.required_node_affinity[1].requirements[1] = req("gen", SelectorOperator::Lt, &["4"]);
    assert_eq!(check(&p, &n), Err(reasons::NODE_AFFINITY.into()));
    // An empty term matches no node, as in Kubernetes.
    p.required_node_affinity = vec![term(Vec::new())];
    assert_eq!(check(&p, &n), Err(reasons::NODE_AFFINITY.into()));
}

#[test]
fn selector_operators() {
    use SelectorOperator::*;
    let m = |op, values: &[&str], value| filter::requirement_matches(&req("k", op, values), value);
    assert!(m(In, &["a", "b"], Some("b")));
    assert!(!m(In, &["a"], None));
    assert!(m(NotIn, &["a"], Some("b")));
    assert!(m(NotIn, &["a"], None));
    assert!(!m(NotIn, &["a"], Some("a")));
    assert!(m(Exists, &[], Some("")));
    assert!(!m(Exists, &[], None));
    assert!(m(DoesNotExist, &[], None));
    assert!(m(Gt, &["3"], Some("10")));
    assert!(!m(Gt, &["3"], Some("x")));
    assert!(!m(Gt, &["3", "4"], Some("10")));
    assert!(m(Lt, &["3"], Some("-1")));
}

#[test]
fn match_fields_on_node_name() {
    let mut p = pod("p");
    p.required_node_affinity = vec![term(vec![req(
        filter::NODE_NAME_FIELD,
        SelectorOperator::In,
        &["b"],
    )])];
    assert_eq!(bound(schedule(&p, &[node("a"), node("b")])), "b");
}

#[test]
fn taints_and_tolerations() {
    let mut n = node("a");
    n.taints = vec![
        taint("soft", "", TaintEffect::PreferNoSchedule),
        taint("gpu", "true", TaintEffect::NoSchedule),
        taint("evict", "now", TaintEffect::NoExecute),
    ];
    let mut p = pod("p");
    assert_eq!(
        check(&p, &n),
        Err("node(s) had untolerated taint {gpu: true}".into())
    );
    p.tolerations.push(toleration(
        "gpu",
        TolerationOperator::Equal,
        "true",
        Some(TaintEffect::NoSchedule),
    ));
    assert_eq!(
        check(&p, &n),
        Err("node(s) had untolerated taint {evict: now}".into())
    );
    // A toleration for another effect does not help.
    p.tolerations.push(toleration(
        "evict",
        TolerationOperator::Exists,
        "",
        Some(TaintEffect::NoSchedule),
    ));
    assert!(check(&p, &n).is_err());
    p.tolerations
        .push(toleration("evict", TolerationOperator::Exists, "", None));
    assert_eq!(check(&p, &n), Ok(()), "PreferNoSchedule never filters");
    // An empty key with Exists tolerates everything.
    let mut q = pod("q");
    q.tolerations
        .push(toleration("", TolerationOperator::Exists, "", None));
    assert_eq!(check(&q, &n), Ok(()));
}

#[test]
fn host_ports_filter() {
    let mut n = node("a");
    n.used_host_ports = vec![80, 443];
    let mut p = pod("p");
    p.host_ports = vec![8080];
    assert_eq!(check(&p, &n), Ok(()));
    p.host_ports = vec![8080, 443];
    assert_eq!(
        check(&p, &n),
        Err("node(s) didn't have free ports for the requested pod ports".into())
    );
}

#[test]
fn required_pod_affinity_by_topology() {
    let zone = "topology.kubernetes.io/zone";
    let mut a = with_labels(node("a"), &[(zone, "z1")]);
    let b = with_labels(node("b"), &[(zone, "z1")]);
    let c = with_labels(node("c"), &[(zone, "z2")]);
    let bare = node("d");
    a.pods.push(placed(&[("app", "db")], None));
    let mut p = pod("p");
    p.required_pod_affinity = vec![affinity_term("db", zone)];
    let nodes = [a, b, c, bare];
    let required = RequiredAffinity::new(&p, &nodes);
    let verdicts: Vec<_> = nodes
        .iter()
        .map(|n| {
            filter::filter(&p, n, &required)
                .err()
                .map(|e| e.into_owned())
        })
        .collect();
    assert_eq!(verdicts[0], None);
    assert_eq!(verdicts[1], None, "same zone as the db pod");
    assert_eq!(
        verdicts[2].as_deref(),
        Some("node(s) didn't match pod affinity rules")
    );
    assert_eq!(
        verdicts[3].as_deref(),
        Some(reasons::POD_AFFINITY),
        "no zone label"
    );
}

#[test]
fn required_pod_affinity_other_namespace_does_not_count() {
    let mut a = node("a");
    let mut other = placed(&[("app", "db")], None);
    other.namespace = "prod".into();
    a.pods.push(other);
    let mut p = pod("p");
    p.required_pod_affinity = vec![affinity_term("db", "kubernetes.io/hostname")];
    assert_eq!(
        rejections(schedule(&p, &[a.clone()])),
        vec![("a".to_owned(), reasons::POD_AFFINITY.to_owned())]
    );
    p.required_pod_affinity[0].namespaces = vec!["prod".into()];
    assert_eq!(bound(schedule(&p, &[a])), "a");
}

#[test]
fn first_pod_of_a_self_affine_group_may_go_anywhere() {
    let mut p = pod("p");
    p.labels = vec![Label::new("app", "web")];
    p.required_pod_affinity = vec![affinity_term("web", "kubernetes.io/hostname")];
    assert!(matches!(
        schedule(&p, &[node("a"), node("b")]),
        Decision::Bind(_)
    ));
    // Once one exists, the rest follow it.
    let mut b = node("b");
    b.pods.push(placed(&[("app", "web")], None));
    assert_eq!(bound(schedule(&p, &[node("a"), b])), "b");
}

#[test]
fn required_pod_anti_affinity_by_topology() {
    let host = "kubernetes.io/hostname";
    let mut a = node("a");
    a.pods.push(placed(&[("app", "web")], None));
    let mut p = pod("p");
    p.required_pod_anti_affinity = vec![affinity_term("web", host)];
    assert_eq!(
        check(&p, &a),
        Err("node(s) didn't match pod anti-affinity rules".into())
    );
    assert_eq!(bound(schedule(&p, &[a.clone(), node("b")])), "b");
    // A node without the topology label is in no domain: the term does not apply.
    let mut unlabeled = a;
    unlabeled.labels.clear();
    assert_eq!(check(&p, &unlabeled), Ok(()));
}

#[test]
fn a_selector_of_no_values_selects_no_pod() {
    // What the host passes for a term with no `labelSelector`: as in
    // Kubernetes it matches no pod, so it keeps the pod off no node...
    let host = "kubernetes.io/hostname";
    let mut a = node("a");
    a.pods.push(placed(&[("app", "web")], None));
    let nothing = PodAffinityTerm {
        selector: term(vec![req("", SelectorOperator::In, &[])]),
        namespaces: Vec::new(),
        topology_key: host.into(),
    };
    let mut p = pod("p");
    p.required_pod_anti_affinity = vec![nothing.clone()];
    assert_eq!(check(&p, &a), Ok(()));
    // ...and, as required affinity, finds no pod to go with, not even itself.
    p.required_pod_anti_affinity.clear();
    p.required_pod_affinity = vec![nothing];
    assert_eq!(check(&p, &a), Err(reasons::POD_AFFINITY.into()));
}

#[test]
fn a_node_short_of_several_resources_gives_each_reason() {
    let mut crowded = node("crowded");
    crowded.requested = Resources {
        milli_cpu: 4000,
        memory_bytes: 8 * GI,
        pods: 110,
    };
    let mut cpu_bound = node("cpu-bound");
    cpu_bound.requested.milli_cpu = 4000;
    let mut tainted = node("tainted");
    tainted.requested = crowded.requested;
    tainted
        .taints
        .push(taint("dedicated", "infra", TaintEffect::NoSchedule));
    let mut memory_bound = node("memory-bound");
    memory_bound.requested.memory_bytes = 8 * GI;
    let nodes = [crowded, cpu_bound, tainted, memory_bound];
    let want: Vec<(String, String)> = [
        ("crowded", reasons::TOO_MANY_PODS),
        ("crowded", reasons::INSUFFICIENT_CPU),
        ("crowded", reasons::INSUFFICIENT_MEMORY),
        ("cpu-bound", reasons::INSUFFICIENT_CPU),
        // Other filters stop at their first reason, as kube-scheduler's do.
        (
            "tainted",
            "node(s) had untolerated taint {dedicated: infra}",
        ),
        ("memory-bound", reasons::INSUFFICIENT_MEMORY),
    ]
    .iter()
    .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
    .collect();
    // Whatever node the search starts at, the caller's order comes back.
    for i in 0..8 {
        let mut p = pod(&format!("p{i}"));
        p.requests.milli_cpu = 500;
        assert_eq!(rejections(schedule(&p, &nodes)), want, "pod p{i}");
    }
}

#[test]
fn filters_report_the_first_failure_in_kubernetes_order() {
    let mut n = node("a");
    n.unschedulable = true;
    n.taints.push(taint("x", "y", TaintEffect::NoSchedule));
    n.requested.milli_cpu = 4000;
    assert_eq!(check(&pod("p"), &n), Err(reasons::UNSCHEDULABLE.into()));
    n.unschedulable = false;
    assert_eq!(
        check(&pod("p"), &n),
        Err("node(s) had untolerated taint {x: y}".into())
    );
    n.taints.clear();
    assert_eq!(check(&pod("p"), &n), Err(reasons::INSUFFICIENT_CPU.into()));
}

#[test]
fn unschedulable_lists_one_rejection_per_node() {
    let mut full = node("full");
    full.requested.milli_cpu = 4000;
    let mut cordoned = node("cordoned");
    cordoned.unschedulable = true;
    let mut tainted = node("tainted");
    tainted
        .taints
        .push(taint("dedicated", "infra", TaintEffect::NoSchedule));
    assert_eq!(
        rejections(schedule(&pod("p"), &[full, cordoned, tainted])),
        vec![
            ("full".to_owned(), "Insufficient cpu".to_owned()),
            (
                "cordoned".to_owned(),
                "node(s) were unschedulable".to_owned()
            ),
            (
                "tainted".to_owned(),
                "node(s) had untolerated taint {dedicated: infra}".to_owned()
            ),
        ]
    );
    assert_eq!(
        schedule(&pod("p"), &[]),
        Decision::Unschedulable(Vec::new())
    );
}

// ---- scores -------------------------------------------------------------

#[test]
fn least_allocated_prefers_emptier_nodes() {
    let mut busy = node("busy");
    busy.requested = Resources {
        milli_cpu: 2000,
        memory_bytes: 4 * GI,
        pods: 5,
    };
    let idle = node("idle");
    let mut p = pod("p");
    p.requests = Resources {
        milli_cpu: 1000,
        memory_bytes: 2 * GI,
        pods: 1,
    };
    // (4000-3000)/4000 = 25 for both resources, and (4000-1000)/4000 = 75.
    assert_eq!(score::least_allocated(&p, &busy), 25);
    assert_eq!(score::least_allocated(&p, &idle), 75);
    assert_eq!(bound(schedule(&p, &[busy, idle])), "idle");
}

#[test]
fn bin_packing_prefers_fuller_nodes_that_fit() {
    let mut busy = node("busy");
    busy.requested = Resources {
        milli_cpu: 2000,
        memory_bytes: 4 * GI,
        pods: 5,
    };
    let mut full = node("full");
    full.requested = Resources {
        milli_cpu: 3500,
        memory_bytes: 4 * GI,
        pods: 5,
    };
    let idle = node("idle");
    let mut p = pod("p");
    p.requests = Resources {
        milli_cpu: 1000,
        memory_bytes: 2 * GI,
        pods: 1,
    };
    // 3000/4000 = 75 for both resources on busy; 1000/4000 = 25 on idle.
    assert_eq!(score::most_allocated(&p, &busy), 75);
    assert_eq!(score::most_allocated(&p, &idle), 25);
    let nodes = [idle, busy, full];
    let packed = super::schedule_with(&p, &nodes, &super::Config::BIN_PACKING);
    // "full" has no room for 1 more CPU; "busy" is the fullest that fits.
    assert_eq!(bound(packed), "busy");
    assert_eq!(bound(schedule(&p, &nodes)), "idle");
}

#[test]
fn least_allocated_counts_missing_requests_as_defaults() {
    let mut p = pod("p");
    p.requests = Resources::default();
    let n = node("a");
    // 100m of 4000m left 97.5% free; 200 MiB of 8 GiB left 97.5% free.
    assert_eq!(score::least_allocated(&p, &n), 97);
}

#[test]
fn balanced_allocation_prefers_even_use() {
    let mut p = pod("p");
    p.requests = Resources {
        milli_cpu: 2000,
        memory_bytes: GI,
        pods: 1,
    };
    let mut cpu_heavy = node("cpu-heavy");
    cpu_heavy.requested.memory_bytes = 0;
    let mut even = node("even");
    even.requested.memory_bytes = 3 * GI;
    // cpu 0.5, memory 0.125: 100 - 100*0.1875 = 81.25; cpu 0.5, memory 0.5: 100.
    assert_eq!(score::balanced_allocation(&p, &cpu_heavy), 81);
    assert_eq!(score::balanced_allocation(&p, &even), 100);
    p.requests = Resources::default();
    assert_eq!(score::balanced_allocation(&p, &even), 0);
}

#[test]
fn spread_across_nodes_and_zones() {
    let zone = score::ZONE_LABEL;
    let mut a = with_labels(node("a"), &[(zone, "z1")]);
    let mut b = with_labels(node("b"), &[(zone, "z1")]);
    let c = with_labels(node("c"), &[(zone, "z2")]);
    a.pods.push(placed(&[], Some("rs-1")));
    a.pods.push(placed(&[], Some("rs-other")));
    b.pods.push(placed(&[], Some("rs-1")));
    let mut p = pod("p");
    p.owner_uid = Some("rs-1".into());
    let feasible = [&a, &b, &c];
    // Nodes: a and b have 1 of max 1 (0), c has none (100); zone z1 has 2
    // of max 2 (0), z2 none (100): (node + 2*zone)/3.
    assert_eq!(score::spread(&p, &feasible), vec![0, 0, 100]);
    // No owner: nothing to spread.
    assert_eq!(score::spread(&pod("q"), &feasible), vec![0, 0, 0]);
    // Even with c a bit busier, spreading wins.
    let mut c = c;
    c.requested.milli_cpu = 1000;
    assert_eq!(bound(schedule(&p, &[a, b, c])), "c");
}

#[test]
fn spread_without_zones_uses_nodes_only() {
    let mut a = node("a");
    a.pods.push(placed(&[], Some("rs-1")));
    a.pods.push(placed(&[], Some("rs-1")));
    let mut b = node("b");
    b.pods.push(placed(&[], Some("rs-1")));
    let c = node("c");
    let mut p = pod("p");
    p.owner_uid = Some("rs-1".into());
    assert_eq!(score::spread(&p, &[&a, &b, &c]), vec![0, 50, 100]);
}

#[test]
fn preferred_node_affinity_scales_to_the_best() {
    let a = with_labels(node("a"), &[("disk", "ssd")]);
    let b = with_labels(node("b"), &[("disk", "ssd"), ("gpu", "yes")]);
    let c = node("c");
    let mut p = pod("p");
    p.preferred_node_affinity = vec![
        WeightedTerm {
            weight: 20,
            term: term(vec![req("disk", SelectorOperator::In, &["ssd"])]),
        },
        WeightedTerm {
            weight: 60,
            term: term(vec![req("gpu", SelectorOperator::Exists, &[])]),
        },
    ];
    assert_eq!(score::node_affinity(&p, &[&a, &b, &c]), vec![25, 100, 0]);
    assert_eq!(bound(schedule(&p, &[a, b, c])), "b");
}

#[test]
fn preferred_pod_affinity_and_anti_affinity() {
    let host = "kubernetes.io/hostname";
    let mut a = node("a");
    a.pods.push(placed(&[("app", "cache")], None));
    let mut b = node("b");
    b.pods.push(placed(&[("app", "web")], None));
    let c = node("c");
    let mut p = pod("p");
    p.preferred_pod_affinity = vec![WeightedPodAffinityTerm {
        weight: 50,
        term: affinity_term("cache", host),
    }];
    p.preferred_pod_anti_affinity = vec![WeightedPodAffinityTerm {
        weight: 100,
        term: affinity_term("web", host),
    }];
    // Raw: a +50, b -100, c 0; min-max scaled.
    let all = [a.clone(), b.clone(), c.clone()];
    assert_eq!(
        score::pod_affinity(&p, &[&a, &b, &c], &all),
        vec![100, 0, 66]
    );
    assert_eq!(bound(schedule(&p, &[a, b, c])), "a");
}

#[test]
fn prefer_no_schedule_taints_score_lower() {
    let mut a = node("a");
    a.taints
        .push(taint("spot", "", TaintEffect::PreferNoSchedule));
    a.taints
        .push(taint("old", "", TaintEffect::PreferNoSchedule));
    let mut b = node("b");
    b.taints
        .push(taint("spot", "", TaintEffect::PreferNoSchedule));
    let c = node("c");
    let mut p = pod("p");
    assert_eq!(score::taint_toleration(&p, &[&a, &b, &c]), vec![0, 50, 100]);
    assert_eq!(bound(schedule(&p, &[a.clone(), b.clone(), c])), "c");
    p.tolerations
        .push(toleration("spot", TolerationOperator::Exists, "", None));
    assert_eq!(score::taint_toleration(&p, &[&a, &b]), vec![0, 100]);
}

#[test]
fn weights_sum_the_scores() {
    let mut p = pod("p");
    p.preferred_node_affinity = vec![WeightedTerm {
        weight: 1,
        term: term(vec![req("fast", SelectorOperator::Exists, &[])]),
    }];
    let fast = with_labels(node("fast"), &[("fast", "")]);
    let mut busy_fast = fast.clone();
    busy_fast.name = "busy-fast".into();
    busy_fast.requested.milli_cpu = 3000;
    let nodes = [node("slow"), fast, busy_fast];
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let totals = score::total(&p, &refs, &nodes, &Weights::KUBERNETES);
    let by_hand: Vec<i64> = refs
        .iter()
        .map(|n| score::least_allocated(&p, n) + score::balanced_allocation(&p, n))
        .zip(score::node_affinity(&p, &refs))
        .zip(score::taint_toleration(&p, &refs))
        .map(|((resources, affinity), taints)| resources + 2 * affinity + 3 * taints)
        .collect();
    assert_eq!(totals, by_hand);
    assert_eq!(bound(schedule(&p, &nodes)), "fast");
    let resources_only = Weights {
        node_affinity: 0,
        ..Weights::KUBERNETES
    };
    let best = score::total(&p, &refs, &nodes, &resources_only);
    assert_eq!(best[0], best[1], "slow and fast tie without the affinity");
}

// ---- decisions ----------------------------------------------------------

#[test]
fn ties_spread_by_uid_and_are_deterministic() {
    let nodes: Vec<NodeInfo> = (0..8).map(|i| node(&format!("n{i}"))).collect();
    let mut chosen = std::collections::BTreeSet::new();
    for i in 0..64 {
        let p = pod(&format!("p{i}"));
        let first = bound(schedule(&p, &nodes));
        assert_eq!(bound(schedule(&p, &nodes)), first, "same pod, same node");
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(
            bound(schedule(&p, &reversed)),
            first,
            "node order does not matter"
        );
        chosen.insert(first);
    }
    assert!(
        chosen.len() >= 6,
        "equal pods spread over equal nodes: {chosen:?}"
    );
    let mut anonymous = pod("p");
    anonymous.uid.clear();
    assert_eq!(
        bound(schedule(&anonymous, &nodes)),
        "n0",
        "no uid: first by name"
    );
}

#[test]
fn only_feasible_nodes_are_scored() {
    let mut tainted = node("a-tainted");
    tainted.taints.push(taint("x", "", TaintEffect::NoSchedule));
    let mut busy = node("b-busy");
    busy.requested.milli_cpu = 3900;
    busy.requested.memory_bytes = 7 * GI;
    assert_eq!(bound(schedule(&pod("p"), &[tainted, busy])), "b-busy");
}

#[test]
fn large_clusters_score_a_sample_as_kubernetes_does() {
    assert_eq!(feasible_nodes_to_find(50, 0), 50);
    assert_eq!(feasible_nodes_to_find(150, 0), 100, "never fewer than 100");
    assert_eq!(feasible_nodes_to_find(1000, 0), 420, "42% of 1,000");
    assert_eq!(feasible_nodes_to_find(5000, 0), 500, "10% of 5,000");
    assert_eq!(feasible_nodes_to_find(100_000, 0), 5000, "at least 5%");
    assert_eq!(feasible_nodes_to_find(5000, 100), 5000);
    assert_eq!(feasible_nodes_to_find(5000, 30), 1500);

    // Pods start their search at different nodes, so they spread over the
    // whole cluster rather than the first 10%.
    let nodes: Vec<NodeInfo> = (0..1000).map(|i| node(&format!("n{i:04}"))).collect();
    let chosen: std::collections::BTreeSet<String> = (0..50)
        .map(|i| bound(schedule(&pod(&format!("p{i}")), &nodes)))
        .collect();
    assert!(chosen.len() > 35, "{chosen:?}");
    assert!(chosen.iter().any(|n| n.as_str() > "n0900"), "{chosen:?}");
    let everything = Config {
        percentage_of_nodes_to_score: 100,
        ..Config::KUBERNETES
    };
    let mut busy = nodes.clone();
    for n in busy.iter_mut().skip(1) {
        n.requested.milli_cpu = 1000;
    }
    assert_eq!(
        bound(schedule_with(&pod("p"), &busy, &everything)),
        "n0000",
        "looking at every node finds the one idle node"
    );
}

#[test]
fn rejections_keep_the_callers_node_order_in_large_clusters() {
    let nodes: Vec<NodeInfo> = (0..300)
        .map(|i| {
            let mut n = node(&format!("n{i:03}"));
            n.requested.pods = 110;
            n
        })
        .collect();
    let rejected = rejections(schedule(&pod("p"), &nodes));
    assert_eq!(rejected.len(), 300);
    assert!(
        rejected
            .iter()
            .zip(&nodes)
            .all(|((name, reason), n)| *name == n.name && reason == reasons::TOO_MANY_PODS)
    );
}

#[test]
fn resource_shares_are_exact_even_past_u64() {
    assert_eq!(score::share(3, 4), 75);
    assert_eq!(score::share(0, 7), 0);
    assert_eq!(score::share(7, 7), 100);
    // part * 100 overflows u64: the exact wide path.
    assert_eq!(score::share(u64::MAX / 2, u64::MAX), 49);
    assert_eq!(score::share(u64::MAX, u64::MAX), 100);
}
