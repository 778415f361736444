//! The rule model against our generator's payloads and against each rule's
//! mutation.

use super::*;
use serde_json::json;
use transcode_common::topics::Topics;
use transcode_common::wire::Heartbeat;
use transcode_orchestrator::homeassistant::Discovery;

/// Our generator, with the default discovery prefix and topics.
fn discovery() -> Discovery {
    Discovery::new("homeassistant", topics())
}

fn topics() -> Topics {
    Topics::new("transcode").expect("a good prefix")
}

/// Accepts exactly the topics of this system under its prefix.
fn existing(topic: &str) -> bool {
    topics().parse(topic).is_some()
}

fn heartbeat(worker_id: &str) -> Heartbeat {
    crate::simulated_heartbeat(worker_id)
}

fn parse(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

const WORKERS: &[&str] = &["gaming-pc", "nas.local", "nas_local"];

/// Every generated config: the orchestrator's, then each worker with and
/// without a heartbeat.
fn generated() -> Vec<(String, Value)> {
    let d = discovery();
    let mut out = Vec::new();
    let (t, p) = d.orchestrator_config();
    out.push((t, parse(&p)));
    for w in WORKERS {
        let hb = heartbeat(w);
        for hb in [None, Some(&hb)] {
            let (t, p) = d.worker_config(w, hb);
            out.push((t, parse(&p)));
        }
    }
    out
}

#[test]
fn every_generated_config_passes() {
    for (topic, config) in generated() {
        if let Err(problems) = check_config(&topic, &config, &existing) {
            panic!("{topic}: {problems:#?}\n{config:#}");
        }
    }
}

#[test]
fn unique_ids_are_unique_across_devices() {
    let d = discovery();
    let mut configs = vec![parse(&d.orchestrator_config().1)];
    for w in WORKERS {
        configs.push(parse(&d.worker_config(w, Some(&heartbeat(w))).1));
    }
    assert_eq!(check_unique_across(&configs), Ok(()));

    // The checker itself sees a collision (as a naive '.' -> '_' mapping
    // would make for nas.local and nas_local).
    let nas = parse(&d.worker_config("nas_local", None).1);
    let err = check_unique_across(&[nas.clone(), configs[0].clone(), nas]).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.contains("unique_id `transcode_worker_nas_local_status`")),
        "{err:#?}"
    );
    assert!(
        err.iter().any(|e| e.contains("Device identifier")),
        "{err:#?}"
    );
}

#[test]
fn abbreviated_keys_are_understood() {
    let (topic, payload) = discovery().worker_config("gaming-pc", None);
    let mut c = parse(&payload);
    let root = c.as_object_mut().unwrap();
    let v = root.remove("state_topic").unwrap();
    root.insert("stat_t".into(), v);
    let v = root.remove("availability_topic").unwrap();
    root.insert("avty_t".into(), v);
    let cpu = root["cmps"]["cpu"].as_object_mut().unwrap();
    let v = cpu.remove("unique_id").unwrap();
    cpu.insert("uniq_id".into(), v);
    assert_eq!(check_config(&topic, &c, &existing), Ok(()));

    c["state_topic"] = c["stat_t"].clone();
    let err = check_config(&topic, &c, &existing).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.contains("both `stat_t` and `state_topic`")),
        "{err:#?}"
    );
}

type Mutation = fn(&mut Value);

/// Each rule: a valid generated worker payload with one change, and the
/// words the refusal must contain (in one message).
#[test]
fn each_rule_refuses_its_mutation() {
    let cases: Vec<(Mutation, &[&str])> = vec![
        (|c| *c = json!([1, 2]), &["JSON object"]),
        (
            |c| drop(c.as_object_mut().unwrap().remove("dev")),
            &["no `dev`"],
        ),
        (
            |c| drop(c["dev"].as_object_mut().unwrap().remove("ids")),
            &["`ids`"],
        ),
        (|c| c["dev"]["ids"] = json!([]), &["`ids`"]),
        (
            |c| drop(c.as_object_mut().unwrap().remove("o")),
            &["`o` (origin)"],
        ),
        (
            |c| drop(c["o"].as_object_mut().unwrap().remove("name")),
            &["`o` (origin) has no `name`"],
        ),
        (
            |c| drop(c.as_object_mut().unwrap().remove("cmps")),
            &["no `cmps`"],
        ),
        (|c| c["cmps"] = json!({}), &["`cmps`", "empty"]),
        (
            |c| drop(c["cmps"]["cpu"].as_object_mut().unwrap().remove("p")),
            &["`cpu`", "platform"],
        ),
        (
            |c| {
                drop(
                    c["cmps"]["cpu"]
                        .as_object_mut()
                        .unwrap()
                        .remove("unique_id"),
                )
            },
            &["`cpu`", "unique_id"],
        ),
        (
            |c| c["cmps"]["cpu"]["unique_id"] = c["cmps"]["status"]["unique_id"].clone(),
            &["repeats unique_id", "`status`"],
        ),
        (
            |c| c["cmps"]["cpu"]["p"] = json!("light"),
            &["`cpu`", "\"light\"", "does not know"],
        ),
        // No shared state_topic: the sensors that relied on it lose theirs.
        (
            |c| drop(c.as_object_mut().unwrap().remove("state_topic")),
            &["`cpu` (sensor)", "no `state_topic`"],
        ),
        // (Without the root one too, it would inherit the heartbeat topic.)
        (
            |c| {
                c.as_object_mut().unwrap().remove("state_topic");
                c["cmps"]["online"]
                    .as_object_mut()
                    .unwrap()
                    .remove("state_topic");
            },
            &["`online` (binary_sensor)", "no `state_topic`"],
        ),
        (
            |c| {
                drop(
                    c["cmps"]["cancel"]
                        .as_object_mut()
                        .unwrap()
                        .remove("command_topic"),
                )
            },
            &["`cancel` (button)", "no `command_topic`"],
        ),
        (
            |c| c["cmps"]["cpu"]["options"] = json!(["a", "b"]),
            &["`cpu`", "`options`", "device_class `enum`"],
        ),
        (
            |c| c["cmps"]["status"]["unit_of_measurement"] = json!("%"),
            &["`status`", "`options` together with unit_of_measurement"],
        ),
        (
            |c| c["cmps"]["status"]["state_class"] = json!("measurement"),
            &["`status`", "`options` together with state_class"],
        ),
        (
            |c| c["cmps"]["status"]["options"] = json!([]),
            &["`status`", "non-empty list"],
        ),
        (
            |c| {
                drop(
                    c["cmps"]["status"]
                        .as_object_mut()
                        .unwrap()
                        .remove("options"),
                )
            },
            &["`status`", "`enum` but no `options`"],
        ),
        (
            |c| c["cmps"]["cpu"]["device_class"] = json!("temperature"),
            &["`cpu`", "`%`", "does not fit device_class `temperature`"],
        ),
        (
            |c| c["cmps"]["cpu"]["device_class"] = json!("power"),
            &["`cpu`", "does not fit device_class `power`"],
        ),
        (
            |c| {
                c["cmps"]["cpu"]["device_class"] = json!("data_size");
                c["cmps"]["cpu"]["unit_of_measurement"] = json!("°C");
            },
            &["`°C`", "does not fit device_class `data_size`"],
        ),
        (
            |c| c["cmps"]["cpu"]["device_class"] = json!("wind_chill"),
            &["`cpu`", "`wind_chill`", "does not know"],
        ),
        (
            |c| c["cmps"]["online"]["unit_of_measurement"] = json!("%"),
            &["`online`", "`connectivity`", "takes no unit"],
        ),
        (
            |c| c["cmps"]["cpu"]["state_class"] = json!("average"),
            &["`cpu`", "state_class `average`"],
        ),
        (
            |c| c["cmps"]["online"]["device_class"] = json!("flying"),
            &["`online`", "`flying`", "binary_sensor device class"],
        ),
        (
            |c| c["cmps"]["cpu"]["object_id"] = json!("cpu"),
            &["`cpu`", "`object_id`", "default_entity_id"],
        ),
        (
            |c| c["cmps"]["cpu"]["obj_id"] = json!("cpu"),
            &["`cpu`", "`object_id`"],
        ),
        (|c| c["object_id"] = json!("w"), &["root", "`object_id`"]),
        (
            |c| c["cmps"]["job_progress"]["state_topic"] = json!("elsewhere/job"),
            &[
                "`job_progress`",
                "state_topic `elsewhere/job`",
                "not a topic",
            ],
        ),
        (
            |c| {
                c["cmps"]["job_progress"]["json_attributes_topic"] =
                    json!("transcode/workers/x/nope")
            },
            &["`job_progress`", "json_attributes_topic", "not a topic"],
        ),
        (
            |c| c["cmps"]["cancel"]["command_topic"] = json!("transcode/cancel"),
            &["`cancel`", "command_topic", "not a topic"],
        ),
        (
            |c| c["availability_topic"] = json!("transcode/workers/x"),
            &["root", "availability_topic", "not a topic"],
        ),
        (
            |c| c["cmps"]["online"]["availability_topic"] = json!(""),
            &["`online`", "empty availability_topic"],
        ),
        (
            |c| {
                let root = c.as_object_mut().unwrap();
                root.remove("availability_topic");
                root.insert("availability".into(), json!([{ "topic": "" }]));
            },
            &["root", "empty availability entry #0 topic"],
        ),
        (
            |c| {
                let root = c.as_object_mut().unwrap();
                root.remove("availability_topic");
                root.insert(
                    "availability".into(),
                    json!([{ "payload_available": "up" }]),
                );
            },
            &["root", "empty availability entry #0 topic"],
        ),
        (
            |c| {
                let root = c.as_object_mut().unwrap();
                root.remove("availability_topic");
                root.insert("avty".into(), json!([{ "t": "transcode/nowhere" }]));
            },
            &[
                "availability entry #0 topic `transcode/nowhere`",
                "not a topic",
            ],
        ),
        // The online sensor's own availability_topic beside a shared list.
        (
            |c| {
                let root = c.as_object_mut().unwrap();
                let t = root.remove("availability_topic").unwrap();
                root.insert("availability".into(), json!([{ "topic": t }]));
            },
            &["`online`", "both `availability` and `availability_topic`"],
        ),
    ];
    let (topic, payload) = discovery().worker_config("nas.local", Some(&heartbeat("nas.local")));
    let base = parse(&payload);
    assert_eq!(check_config(&topic, &base, &existing), Ok(()));
    for (i, (mutate, needles)) in cases.into_iter().enumerate() {
        let mut c = base.clone();
        mutate(&mut c);
        let err = check_config(&topic, &c, &existing)
            .expect_err(&format!("case {i} ({needles:?}) must be refused"));
        assert!(
            err.iter().any(|e| needles.iter().all(|n| e.contains(n))),
            "case {i}: no message contains all of {needles:?}: {err:#?}"
        );
    }
}

#[test]
fn bad_discovery_topics_are_refused() {
    let (_, payload) = discovery().orchestrator_config();
    let c = parse(&payload);
    let cases = [
        (
            "homeassistant/device/nas.local/config",
            "Object id `nas.local`",
        ),
        ("homeassistant/device/a b/config", "Object id `a b`"),
        (
            "homeassistant/sensor/transcode_orchestrator/config",
            "not of the form",
        ),
        ("device/transcode_orchestrator/config", "not of the form"),
        (
            "homeassistant/device/transcode_orchestrator/state",
            "not of the form",
        ),
        ("homeassistant/device//config", "Object id ``"),
        (
            "home+/device/transcode_orchestrator/config",
            "not of the form",
        ),
    ];
    for (topic, needle) in cases {
        let err = check_config(topic, &c, &existing).expect_err(topic);
        assert!(err.iter().any(|e| e.contains(needle)), "{topic}: {err:#?}");
    }
    // A prefix of several levels is fine.
    let d = Discovery::new("home/ha", topics());
    let (topic, payload) = d.orchestrator_config();
    assert_eq!(check_config(&topic, &parse(&payload), &existing), Ok(()));
}
