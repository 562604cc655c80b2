//! Hostile and broken plugins, written as WAT components: each is refused
//! with a clear one-line error or contained to its own instance, and the
//! host goes on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchd_plugin_host::scheduler::types::{Decision, PodInfo, Resources};
use orchd_plugin_host::{Limits, LogLevel, LogSink, PluginEngine, PluginError, SchedulerPlugin};

/// The scheduling types of `orchd:plugin@0.1.0`, exported at the root so
/// the functions below may use them (a component may only export functions
/// whose named types are themselves exported or imported).
const TYPES: &str = r#"
  (type $resources (record (field "milli-cpu" u64) (field "memory-bytes" u64) (field "pods" u32)))
  (export $Resources "resources" (type $resources))
  (type $label (record (field "key" string) (field "value" string)))
  (export $Label "label" (type $label))
  (type $taint-effect (enum "no-schedule" "prefer-no-schedule" "no-execute"))
  (export $TaintEffect "taint-effect" (type $taint-effect))
  (type $taint (record (field "key" string) (field "value" string) (field "effect" $TaintEffect)))
  (export $Taint "taint" (type $taint))
  (type $toleration-operator (enum "exists" "equal"))
  (export $TolOp "toleration-operator" (type $toleration-operator))
  (type $toleration (record (field "key" string) (field "operator" $TolOp) (field "value" string)
                            (field "effect" (option $TaintEffect))))
  (export $Toleration "toleration" (type $toleration))
  (type $selector-operator (enum "in" "not-in" "exists" "does-not-exist" "gt" "lt"))
  (export $SelOp "selector-operator" (type $selector-operator))
  (type $selector-requirement (record (field "key" string) (field "operator" $SelOp)
                                      (field "values" (list string))))
  (export $SelReq "selector-requirement" (type $selector-requirement))
  (type $selector-term (record (field "requirements" (list $SelReq))))
  (export $SelTerm "selector-term" (type $selector-term))
  (type $weighted-term (record (field "weight" s32) (field "term" $SelTerm)))
  (export $WTerm "weighted-term" (type $weighted-term))
  (type $pod-affinity-term (record (field "selector" $SelTerm) (field "namespaces" (list string))
                                   (field "topology-key" string)))
  (export $PAT "pod-affinity-term" (type $pod-affinity-term))
  (type $weighted-pod-affinity-term (record (field "weight" s32) (field "term" $PAT)))
  (export $WPAT "weighted-pod-affinity-term" (type $weighted-pod-affinity-term))
  (type $pod-info (record
    (field "namespace" string) (field "name" string) (field "uid" string)
    (field "labels" (list $Label)) (field "requests" $Resources)
    (field "node-name" (option string)) (field "node-selector" (list $Label))
    (field "required-node-affinity" (list $SelTerm))
    (field "preferred-node-affinity" (list $WTerm))
    (field "tolerations" (list $Toleration)) (field "host-ports" (list u16))
    (field "required-pod-affinity" (list $PAT)) (field "required-pod-anti-affinity" (list $PAT))
    (field "preferred-pod-affinity" (list $WPAT)) (field "preferred-pod-anti-affinity" (list $WPAT))
    (field "owner-uid" (option string))))
  (export $PodInfo "pod-info" (type $pod-info))
  (type $node (record
    (field "name" string) (field "labels" (list $Label)) (field "allocatable" $Resources)
    (field "taints" (list $Taint)) (field "unschedulable" bool) (field "ready" bool)))
  (export $Node "node" (type $node))
  (type $placed-pod (record (field "key" string) (field "node" string) (field "namespace" string)
                            (field "labels" (list $Label)) (field "owner-uid" (option string))
                            (field "requests" $Resources) (field "host-ports" (list u16))))
  (export $PlacedPod "placed-pod" (type $placed-pod))
  (type $cluster-change (variant (case "node-set" $Node) (case "node-removed" string)
                                 (case "pod-placed" $PlacedPod) (case "pod-removed" string)))
  (export $ClusterChange "cluster-change" (type $cluster-change))
  (type $rejection (record (field "node" string) (field "reason" string)))
  (export $Rejection "rejection" (type $rejection))
  (type $decision (variant (case "bind" string) (case "unschedulable" (list $Rejection))))
  (export $Decision "decision" (type $decision))
"#;

/// A scheduler component whose `schedule` body is `schedule_body` (core
/// function `(param i32 i32) (result i32)`: the list of pods as pointer
/// and length, pointer to the result). `scheduler-name` answers
/// "hostile", `update` ignores the changes; [`POLITE`] answers
/// `unschedulable([])` for every pod.
fn scheduler_component(schedule_body: &str) -> Vec<u8> {
    match wat::parse_str(scheduler_component_text(schedule_body)) {
        Ok(bytes) => bytes,
        Err(e) => panic!("test component does not assemble: {e}"),
    }
}

/// The WAT text of [`scheduler_component`], for tests that edit it.
fn scheduler_component_text(schedule_body: &str) -> String {
    format!(
        r#"(component
  {TYPES}
  (core module $m
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
        (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (block $ok
        (loop $grow
          (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
          (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
          (br $grow)))
      (local.get $p))
    (func $polite (param $pods i32) (param $len i32) (result i32)
      (local $out i32) (local $at i32) (local $i i32)
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 4)
                                     (i32.mul (local.get $len) (i32.const 12))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
          (local.set $at (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 12))))
          (i32.store8 (local.get $at) (i32.const 1))
          (i32.store offset=4 (local.get $at) (i32.const 0))
          (i32.store offset=8 (local.get $at) (i32.const 0))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.store (i32.const 64) (local.get $out))
      (i32.store (i32.const 68) (local.get $len))
      (i32.const 64))
    (func (export "update") (param i32 i32 i32))
    (data (i32.const 16) "hostile")
    (func (export "name") (result i32)
      (i32.store (i32.const 32) (i32.const 16))
      (i32.store (i32.const 36) (i32.const 7))
      (i32.const 32))
    (func (export "schedule") (param i32 i32) (result i32)
      {schedule_body})
  )
  (core instance $i (instantiate $m))
  (func $name (result string)
    (canon lift (core func $i "name") (memory $i "memory") (realloc (func $i "cabi_realloc"))))
  (export "scheduler-name" (func $name))
  (func $update (param "changes" (list $ClusterChange)) (param "reset" bool)
    (canon lift (core func $i "update") (memory $i "memory") (realloc (func $i "cabi_realloc"))))
  (export "update" (func $update))
  (func $schedule (param "pods" (list $PodInfo)) (result (list $Decision))
    (canon lift (core func $i "schedule") (memory $i "memory") (realloc (func $i "cabi_realloc"))))
  (export "schedule" (func $schedule))
)"#
    )
}

/// `unschedulable([])` for each pod.
const POLITE: &str = "(call $polite (local.get 0) (local.get 1))";
/// Prepended to a hostile body: the host's warm-up decision (its one pod
/// is named `orchd-warm-up`, 13 bytes; the name's length is the word at
/// offset 12 of the first pod) gets the polite answer, so the plugin loads
/// and misbehaves on real work, as a buggy plugin would.
const SPARE_WARM_UP: &str = "(if (i32.eq (i32.load offset=12 (local.get 0)) (i32.const 13))
      (then (return (call $polite (local.get 0) (local.get 1)))))";

/// `body` behind [`SPARE_WARM_UP`].
fn after_warm_up(body: &str) -> Vec<u8> {
    scheduler_component(&format!("{SPARE_WARM_UP} {body}"))
}

const SPIN: &str = "(loop $spin (br $spin)) (i32.const 0)";
const BOMB: &str = "(loop $grow (drop (memory.grow (i32.const 16))) (br $grow)) (i32.const 0)";
const TRAP: &str = "unreachable";

fn pod() -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: "p".into(),
        uid: "u".into(),
        labels: vec![],
        requests: Resources {
            milli_cpu: 100,
            memory_bytes: 1 << 20,
            pods: 1,
        },
        node_name: None,
        node_selector: vec![],
        required_node_affinity: vec![],
        preferred_node_affinity: vec![],
        tolerations: vec![],
        host_ports: vec![],
        required_pod_affinity: vec![],
        required_pod_anti_affinity: vec![],
        preferred_pod_affinity: vec![],
        preferred_pod_anti_affinity: vec![],
        owner_uid: None,
    }
}

/// The decision for [`pod`] alone, the view reset to an empty cluster
/// (every call may start a new instance here).
fn decide(plugin: &mut SchedulerPlugin) -> Result<Decision, PluginError> {
    let mut decisions = plugin.schedule(&[], true, &[pod()])?;
    assert_eq!(decisions.len(), 1);
    Ok(decisions.remove(0))
}

fn capture() -> (LogSink, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LogSink = Arc::new(move |plugin: &str, level: LogLevel, message: &str| {
        if let Ok(mut l) = sink_lines.lock() {
            l.push(format!("{plugin} {} {message}", level.as_str()));
        }
    });
    (sink, lines)
}

fn load(
    engine: &PluginEngine,
    bytes: &[u8],
    limits: Limits,
) -> Result<SchedulerPlugin, PluginError> {
    let compiled = engine.compile(bytes)?;
    SchedulerPlugin::load(engine, &compiled, "hostile", limits, capture().0)
}

fn engine() -> PluginEngine {
    match PluginEngine::new(None) {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    }
}

#[test]
fn a_well_behaved_wat_scheduler_answers() {
    let engine = engine();
    let mut plugin = load(&engine, &scheduler_component(POLITE), Limits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.scheduler_name(), "hostile");
    match decide(&mut plugin) {
        Ok(Decision::Unschedulable(r)) => assert!(r.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_spinning_plugin_misses_its_deadline_and_the_next_call_gets_a_fresh_instance() {
    let engine = engine();
    let limits = Limits {
        call_deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut plugin = load(&engine, &after_warm_up(SPIN), limits).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let err = decide(&mut plugin).err();
    let took = started.elapsed();
    assert!(
        matches!(err, Some(PluginError::Deadline { .. })),
        "expected a deadline error, got {err:?}"
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("200 ms deadline in schedule"), "{message}");
    // The trapped instance is gone; the next call runs on a new one.
    assert_eq!(plugin.call_scheduler_name().as_deref(), Ok("hostile"));
    assert_eq!(plugin.status().restarts, 1);
    assert_eq!(plugin.status().consecutive_failures, 0);
}

#[test]
fn a_memory_bomb_traps_cleanly_at_the_cap() {
    let engine = engine();
    let limits = Limits {
        memory_bytes: 16 << 20,
        call_deadline: Duration::from_secs(5),
        ..Limits::default()
    };
    let mut plugin = load(&engine, &after_warm_up(BOMB), limits).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let err = decide(&mut plugin).err();
    assert!(
        matches!(err, Some(PluginError::OutOfMemory { limit_bytes, .. }) if limit_bytes == 16 << 20),
        "expected out-of-memory, got {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the cap, not the deadline, stopped it"
    );
    assert_eq!(plugin.call_scheduler_name().as_deref(), Ok("hostile"));
}

#[test]
fn a_plugin_that_keeps_trapping_backs_off() {
    let engine = engine();
    let mut plugin =
        load(&engine, &after_warm_up(TRAP), Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let first = decide(&mut plugin).err();
    assert!(matches!(first, Some(PluginError::Trap { .. })), "{first:?}");
    let message = first.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("unreachable"), "{message}");
    // First restart is immediate; it traps again and now backs off.
    let second = decide(&mut plugin).err();
    assert!(
        matches!(second, Some(PluginError::Trap { .. })),
        "{second:?}"
    );
    let third = decide(&mut plugin).err();
    assert!(
        matches!(third, Some(PluginError::BackingOff { failures: 2, .. })),
        "{third:?}"
    );
    std::thread::sleep(Duration::from_millis(120));
    let fourth = decide(&mut plugin).err();
    assert!(
        matches!(fourth, Some(PluginError::Trap { .. })),
        "{fourth:?}"
    );
    assert_eq!(plugin.status().restarts, 2);
    assert_eq!(plugin.status().consecutive_failures, 3);
}

#[test]
fn garbage_core_modules_and_strangers_are_rejected_in_one_line() {
    let engine = engine();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"MZ\x90\x00 definitely not wasm".to_vec(), "not a WebAssembly component"),
        ("empty", Vec::new(), "not a WebAssembly component"),
        (
            "core module",
            wat::parse_str("(module (func (export \"schedule\")))").unwrap_or_default(),
            "core WebAssembly module, not a component",
        ),
        (
            "truncated component",
            scheduler_component(POLITE)[..200].to_vec(),
            "invalid component",
        ),
        (
            "no known world",
            wat::parse_str("(component (core module $m (func (export \"f\"))) (core instance $i (instantiate $m)) (func $f (canon lift (core func $i \"f\"))) (export \"hello\" (func $f)))").unwrap_or_default(),
            "matches no known world",
        ),
        (
            "wrong signature",
            wat::parse_str("(component (core module $m (func (export \"f\"))) (core instance $i (instantiate $m)) (func $f (canon lift (core func $i \"f\"))) (export \"scheduler-name\" (func $f)) (export \"update\" (func $f)) (export \"schedule\" (func $f)))").unwrap_or_default(),
            "does not match world scheduler",
        ),
        (
            "import the host does not provide",
            wat::parse_str(scheduler_component_text(POLITE).replacen(
                "(component",
                "(component (import \"evil:net/raw-socket\" (instance (export \"open\" (func))))",
                1,
            ))
            .unwrap_or_default(),
            "cannot link",
        ),
    ];
    for (what, bytes, expected) in cases {
        assert!(
            !bytes.is_empty() || what == "empty",
            "{what}: test input did not assemble"
        );
        let err = match engine.compile(&bytes) {
            Err(e) => e,
            Ok(compiled) => {
                match SchedulerPlugin::load(&engine, &compiled, "x", Limits::default(), capture().0)
                {
                    Err(e) => e,
                    Ok(_) => panic!("{what}: accepted"),
                }
            }
        };
        let message = err.to_string();
        assert!(matches!(err, PluginError::Invalid(_)), "{what}: {err:?}");
        assert!(message.contains(expected), "{what}: {message}");
        assert!(!message.contains('\n'), "{what}: not one line: {message}");
    }
}

#[test]
fn compiled_artifacts_are_cached_by_digest() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bytes = scheduler_component(POLITE);
    let first = PluginEngine::new(Some(dir.path().to_path_buf()))
        .and_then(|e| e.compile(&bytes))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!first.from_cache);
    assert!(first.digest.starts_with("sha256:") && first.digest.len() == 71);
    // A new engine (a restarted host) loads the artifact instead.
    let engine =
        PluginEngine::new(Some(dir.path().to_path_buf())).unwrap_or_else(|e| panic!("{e}"));
    let second = engine.compile(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(second.from_cache);
    assert_eq!(second.digest, first.digest);
    let mut plugin =
        SchedulerPlugin::load(&engine, &second, "cached", Limits::default(), capture().0)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(decide(&mut plugin).is_ok());
    // A damaged artifact is dropped and the component compiled again.
    // Live components map their artifact, so damage is done the way a
    // crashed writer or a bad disk would leave it: a different file under
    // the same name, never the mapped one rewritten in place.
    drop(plugin);
    drop(second);
    for entry in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let damaged = entry.path().with_extension("damaged");
        std::fs::write(&damaged, b"corrupt").unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&damaged, entry.path()).unwrap_or_else(|e| panic!("{e}"));
    }
    let third = engine.compile(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(!third.from_cache);
}

#[test]
fn a_plugin_that_cannot_decide_at_all_fails_its_warm_up() {
    let engine = engine();
    for (body, expected) in [
        (TRAP, "trapped in schedule"),
        (SPIN, "deadline in schedule"),
    ] {
        let limits = Limits {
            call_deadline: Duration::from_millis(100),
            ..Limits::default()
        };
        let err = load(&engine, &scheduler_component(body), limits).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(expected), "{message}");
    }
}
