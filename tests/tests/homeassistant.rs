//! Home Assistant sees every worker and the orchestrator without any YAML:
//! retained device discovery that passes Home Assistant's rules, pointing at
//! topics that really carry data, a cancel button that cancels, and
//! everything published again when Home Assistant says it is online.

use std::time::Duration;

use serde_json::Value;
use transcode_tests::homeassistant_rules::{check_config, check_unique_across};
use transcode_tests::mqtt::{self, Watcher};
use transcode_tests::{make_media, wait_until, System};

fn configs(w: &Watcher) -> Vec<(String, Value)> {
    w.messages()
        .into_iter()
        .filter(|m| m.topic.starts_with("homeassistant/device/") && !m.payload.is_empty())
        .filter_map(|m| serde_json::from_str(&m.payload).ok().map(|v| (m.topic, v)))
        .collect()
}

#[test]
fn discovery_is_valid_live_and_republished_and_the_cancel_button_cancels() {
    let sys = System::new();
    make_media(&sys.dir.path().join("media/long.mkv"), 1280, 720, 60, false);
    let _o = sys.start_orchestrator();
    let _a = sys.start_worker("gaming-pc", &[]);
    let _b = sys.start_worker("nas.local", &[]);
    sys.wait_online("gaming-pc", true, Duration::from_secs(30));
    sys.wait_online("nas.local", true, Duration::from_secs(30));

    let watcher = Watcher::start(
        sys.broker_port,
        "homeassistant/#",
        sys.dir.path(),
        "ha-watch",
    );
    let first = wait_until(
        Duration::from_secs(10),
        "three retained device configs",
        || {
            let c = configs(&watcher);
            (c.len() >= 3).then_some(c)
        },
    );
    assert_eq!(first.len(), 3, "{first:?}");

    // Every topic a config names carries a retained message, or is a
    // command topic the orchestrator listens on.
    let port = sys.broker_port;
    let topics = transcode_common::topics::Topics::new("transcode").expect("prefix");
    let exists = |t: &str| -> bool {
        matches!(
            topics.parse(t),
            Some(transcode_common::topics::Topic::WorkerStop(_))
        ) || mqtt::retained(port, t).is_some()
    };
    for (topic, config) in &first {
        if let Err(problems) = check_config(topic, config, &exists) {
            panic!("{topic} breaks Home Assistant's rules: {problems:?}\n{config}");
        }
    }
    let all: Vec<Value> = first.iter().map(|(_, c)| c.clone()).collect();
    check_unique_across(&all).unwrap_or_else(|p| panic!("{p:?}"));

    // The cancel button of the worker running a job cancels it.
    let id = sys.submit(
        &serde_json::json!({"source_path": "long.mkv", "resolution": "720p", "bitrate": "1M"}),
    );
    let running = sys.wait_job(&id, "processing", Duration::from_secs(60));
    let worker = running["worker_id"].as_str().expect("worker").to_string();
    let device = first
        .iter()
        .find(|(_, c)| {
            c["cmps"].as_object().is_some_and(|m| {
                m.values()
                    .any(|x| x["command_topic"] == format!("transcode/workers/{worker}/stop"))
            })
        })
        .map(|(_, c)| c.clone())
        .expect("the device of that worker");
    let button = device["cmps"]
        .as_object()
        .and_then(|m| m.values().find(|x| x["p"] == "button"))
        .expect("a button")
        .clone();
    let press = button["payload_press"]
        .as_str()
        .unwrap_or("PRESS")
        .to_string();
    assert!(mqtt::publish(
        port,
        button["command_topic"].as_str().expect("command_topic"),
        press.as_bytes(),
        false
    ));
    sys.wait_job(&id, "cancelled", Duration::from_secs(5));

    // Home Assistant restarts: every config arrives again.
    assert!(mqtt::publish(
        port,
        "homeassistant/status",
        b"online",
        false
    ));
    wait_until(
        Duration::from_secs(10),
        "the configs to arrive again",
        || (configs(&watcher).len() >= 6).then_some(()),
    );
    // Its job progress sensor reads the worker's current-job topic.
    let current = mqtt::retained(port, &format!("transcode/workers/{worker}/job"))
        .expect("current job topic");
    let current: Value = serde_json::from_str(&current).expect("JSON");
    assert!(current.get("progress").is_some(), "{current}");
}
