//! Home Assistant MQTT device discovery, free of IO.
//!
//! [`Discovery`] builds one retained message per device on
//! `{discovery_prefix}/device/{object_id}/config` (the device format of
//! HA 2024.11+): a device per worker and one for the orchestrator. Every
//! entity reads the system's own topics (heartbeat, availability, the
//! worker's current job, the orchestrator's stats); nothing is published for
//! Home Assistant alone.
//!
//! Home Assistant only logs a payload it refuses, so the tests crate has a
//! model of its rules (`transcode_tests::homeassistant_rules`, see
//! `NOTES.md`, "Home Assistant MQTT discovery") and runs every generated
//! payload through it.
//!
//! The payload is typed in `payload` (`DeviceConfig`, `Component`). Keys:
//! the device-level structure uses the abbreviations of HA's own example
//! (`dev` with `ids`/`name`/`mf`/`mdl`/`sw`, `o`, `cmps`, `p`); every entity
//! option uses its full name, so `mosquitto_sub` output stays readable.

use std::collections::BTreeMap;

use transcode_common::topics::{Topics, OFFLINE, ONLINE};
use transcode_common::wire::{self, Heartbeat, Os, WorkerStatus};

mod payload;
use payload::{Component, Device, DeviceConfig, Origin, Platform};

/// Manufacturer and origin name shown in Home Assistant.
const PRODUCT: &str = "transcode-worker";
/// Object id (and device identifier) of the orchestrator's device.
pub const ORCHESTRATOR_OBJECT_ID: &str = "transcode_orchestrator";
/// Payload Home Assistant publishes on [`Discovery::ha_status_topic`] when it
/// starts: publish every config (and the current states) again then.
pub const HA_ONLINE: &str = "online";
/// What the cancel button sends on the worker's stop topic, where the
/// orchestrator cancels the worker's jobs (and seals its cancel for the
/// worker, which takes no other).
pub const CANCEL_PAYLOAD: &str = "CANCEL";
/// The job progress sensor's attributes: the job, where it streams, and its
/// state, read from the worker's job topic. `.get` gives null for a missing
/// key (the idle payload has no job_id); a plain `value_json.job_id` would
/// break tojson.
const JOB_ATTRIBUTES: &str = "{{ {'job_id': value_json.get('job_id'), 'stream_url': value_json.get('stream_url'), 'state': value_json.get('state')} | tojson }}";

/// Builds the discovery messages for one installation.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Home Assistant's discovery prefix (`homeassistant` unless changed in
    /// HA's MQTT options); every config topic lives under it.
    discovery_prefix: String,
    /// Our own topics: the entities' state, availability and command topics.
    topics: Topics,
    /// Reported as the origin's and the orchestrator's software version.
    version: String,
}

impl Discovery {
    pub fn new(discovery_prefix: &str, topics: Topics) -> Discovery {
        Discovery {
            discovery_prefix: discovery_prefix.trim().trim_end_matches('/').to_string(),
            topics,
            version: transcode_common::VERSION.to_string(),
        }
    }

    /// The topic Home Assistant announces itself on (payload [`HA_ONLINE`]).
    pub fn ha_status_topic(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// The config topic of a device.
    fn config_topic(&self, object_id: &str) -> String {
        format!("{}/device/{object_id}/config", self.discovery_prefix)
    }

    fn origin(&self) -> Origin {
        Origin {
            name: PRODUCT,
            sw: self.version.clone(),
        }
    }

    /// (topic, payload) of the retained device config for one worker.
    pub fn worker_config(
        &self,
        worker_id: &str,
        heartbeat: Option<&Heartbeat>,
    ) -> (String, Vec<u8>) {
        let object_id = worker_object_id(worker_id);
        let config = DeviceConfig {
            dev: Device {
                ids: vec![object_id.clone()],
                name: worker_id.to_string(),
                mf: PRODUCT,
                mdl: match heartbeat {
                    Some(hb) => format!("Transcode worker ({})", os_name(hb.os)),
                    None => "Transcode worker".to_string(),
                },
                sw: heartbeat.and_then(|hb| hb.version.clone()),
            },
            o: self.origin(),
            availability_topic: self.topics.worker_availability(worker_id),
            payload_available: ONLINE,
            payload_not_available: OFFLINE,
            state_topic: self.topics.worker_heartbeat(worker_id),
            cmps: self.worker_components(worker_id, &object_id),
        };
        (self.config_topic(&object_id), wire::encode(&config))
    }

    /// A worker's entities: its status, CPU load and job progress, whether
    /// it is online, and the button that cancels its jobs.
    fn worker_components(
        &self,
        worker_id: &str,
        object_id: &str,
    ) -> BTreeMap<&'static str, Component> {
        let t = &self.topics;
        let uid = |key: &str| format!("{object_id}_{key}");
        let statuses = [
            WorkerStatus::Idle,
            WorkerStatus::Working,
            WorkerStatus::Draining,
        ]
        .iter()
        .map(WorkerStatus::as_str)
        .collect();
        let job_topic = t.worker_job(worker_id);

        let status = Component {
            device_class: Some("enum"),
            options: Some(statuses),
            value_template: Some("{{ value_json.status }}".into()),
            ..Component::new(Platform::Sensor, uid("status"), "Status")
        };
        let cpu = Component {
            unit_of_measurement: Some("%"),
            state_class: Some("measurement"),
            value_template: Some("{{ value_json.cpu_usage }}".into()),
            ..Component::new(Platform::Sensor, uid("cpu"), "CPU")
        };
        let job_progress = Component {
            state_topic: Some(job_topic.clone()),
            unit_of_measurement: Some("%"),
            state_class: Some("measurement"),
            value_template: Some("{{ value_json.progress }}".into()),
            json_attributes_topic: Some(job_topic),
            json_attributes_template: Some(JOB_ATTRIBUTES),
            ..Component::new(Platform::Sensor, uid("job_progress"), "Job progress")
        };
        let online = Component {
            device_class: Some("connectivity"),
            state_topic: Some(t.worker_availability(worker_id)),
            payload_on: Some(ONLINE),
            payload_off: Some(OFFLINE),
            // Its own availability: "off" when the worker is gone,
            // "unavailable" only when the orchestrator is.
            availability_topic: Some(t.orchestrator_availability()),
            ..Component::new(Platform::BinarySensor, uid("online"), "Online")
        };
        let cancel = Component {
            command_topic: Some(t.worker_stop(worker_id)),
            payload_press: Some(CANCEL_PAYLOAD),
            ..Component::new(Platform::Button, uid("cancel"), "Cancel job")
        };
        BTreeMap::from([
            ("status", status),
            ("cpu", cpu),
            ("job_progress", job_progress),
            ("online", online),
            ("cancel", cancel),
        ])
    }

    /// (topic, empty payload): removes the worker's device from Home
    /// Assistant. Publish it retained, so the retained config is cleared too.
    pub fn remove_worker(&self, worker_id: &str) -> (String, Vec<u8>) {
        (self.config_topic(&worker_object_id(worker_id)), Vec::new())
    }

    /// (topic, payload) of the orchestrator's own device config: its
    /// counters, read from its stats.
    pub fn orchestrator_config(&self) -> (String, Vec<u8>) {
        let counter = |key: &'static str, name, unit| {
            let base = Component::new(
                Platform::Sensor,
                format!("{ORCHESTRATOR_OBJECT_ID}_{key}"),
                name,
            );
            let counter = Component {
                unit_of_measurement: Some(unit),
                state_class: Some("measurement"),
                value_template: Some(format!("{{{{ value_json.{key} }}}}")),
                ..base
            };
            (key, counter)
        };
        let config = DeviceConfig {
            dev: Device {
                ids: vec![ORCHESTRATOR_OBJECT_ID.to_string()],
                name: "Transcode orchestrator".to_string(),
                mf: PRODUCT,
                mdl: "Transcode orchestrator".to_string(),
                sw: Some(self.version.clone()),
            },
            o: self.origin(),
            availability_topic: self.topics.orchestrator_availability(),
            payload_available: ONLINE,
            payload_not_available: OFFLINE,
            state_topic: self.topics.orchestrator_stats(),
            cmps: BTreeMap::from([
                counter("queued_jobs", "Queued jobs", "jobs"),
                counter("running_jobs", "Running jobs", "jobs"),
                counter("workers_online", "Workers online", "workers"),
            ]),
        };
        (
            self.config_topic(ORCHESTRATOR_OBJECT_ID),
            wire::encode(&config),
        )
    }
}

/// The object id (and device identifier) of a worker's device:
/// `transcode_worker_<id>`. Characters outside `[a-zA-Z0-9_-]` (a worker id
/// may contain '.') become '_', and then a hash of the real id is appended,
/// so `nas.local` and `nas_local` stay two devices.
pub fn worker_object_id(worker_id: &str) -> String {
    let mapped: String = worker_id
        .chars()
        .map(|c| if valid_id_char(c) { c } else { '_' })
        .collect();
    if mapped == worker_id {
        format!("transcode_worker_{mapped}")
    } else {
        format!("transcode_worker_{mapped}_{}", short_hash(worker_id))
    }
}

fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// FNV-1a, 32 bits, as 8 hex digits: short, and the same on every machine
/// and Rust version (std's hasher promises neither), so unique ids survive
/// an upgrade.
fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

fn os_name(os: Os) -> &'static str {
    match os {
        Os::Windows => "Windows",
        Os::Linux => "Linux",
        Os::Macos => "macOS",
        Os::Other => "other OS",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const PREFIX: &str = "homeassistant";

    fn topics() -> Topics {
        Topics::new("transcode").unwrap()
    }

    fn discovery() -> Discovery {
        Discovery::new(PREFIX, topics())
    }

    fn heartbeat(worker_id: &str) -> Heartbeat {
        wire::decode(
            format!(
                r#"{{"worker_id":"{worker_id}","ip_address":"192.168.1.50","port":8080,
                "os":"linux","hw_accel":["qsv"],"status":"idle","cpu_usage":5,"version":"0.1.0"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn parse(payload: &[u8]) -> Value {
        serde_json::from_slice(payload).unwrap()
    }

    const WORKERS: &[&str] = &["gaming-pc", "nas.local", "nas_local"];

    #[test]
    fn object_ids() {
        let cases = [
            ("gaming-pc", "transcode_worker_gaming-pc"),
            ("nas_local", "transcode_worker_nas_local"),
            ("Udoo01", "transcode_worker_Udoo01"),
        ];
        for (worker, want) in cases {
            assert_eq!(worker_object_id(worker), want);
        }
        let dotted = worker_object_id("nas.local");
        assert!(
            dotted.starts_with("transcode_worker_nas_local_"),
            "{dotted}"
        );
        assert_eq!(dotted, worker_object_id("nas.local"), "stable");
        assert_ne!(dotted, worker_object_id("nas_local"));
        assert_ne!(worker_object_id("a.b"), worker_object_id("a_b"));
        assert!(dotted.chars().all(valid_id_char));
        assert_eq!(
            discovery().worker_config("nas.local", None).0,
            format!("homeassistant/device/{dotted}/config")
        );
    }

    #[test]
    fn worker_config_content() {
        let t = topics();
        let (_, payload) = discovery().worker_config("gaming-pc", Some(&heartbeat("gaming-pc")));
        let c = parse(&payload);
        assert_eq!(c["dev"]["name"], "gaming-pc");
        assert_eq!(c["dev"]["mdl"], "Transcode worker (Linux)");
        assert_eq!(c["dev"]["sw"], "0.1.0");
        assert_eq!(c["dev"]["mf"], "transcode-worker");
        assert_eq!(c["o"]["name"], "transcode-worker");
        assert_eq!(c["availability_topic"], t.worker_availability("gaming-pc"));
        assert_eq!(c["state_topic"], t.worker_heartbeat("gaming-pc"));
        let cmps = c["cmps"].as_object().unwrap();
        let ids: Vec<&str> = cmps.keys().map(String::as_str).collect();
        assert_eq!(ids, ["cancel", "cpu", "job_progress", "online", "status"]);
        assert_eq!(
            cmps["status"]["options"],
            json!(["idle", "working", "draining"])
        );
        assert_eq!(
            cmps["job_progress"]["state_topic"],
            t.worker_job("gaming-pc")
        );
        assert_eq!(
            cmps["job_progress"]["json_attributes_topic"],
            t.worker_job("gaming-pc")
        );
        assert_eq!(
            cmps["online"]["availability_topic"],
            t.orchestrator_availability()
        );
        assert_eq!(
            cmps["online"]["state_topic"],
            t.worker_availability("gaming-pc")
        );
        assert_eq!(cmps["cancel"]["command_topic"], t.worker_stop("gaming-pc"));
        assert_eq!(cmps["cancel"]["payload_press"], "CANCEL");

        let (_, bare) = discovery().worker_config("gaming-pc", None);
        let bare = parse(&bare);
        assert_eq!(bare["dev"]["mdl"], "Transcode worker");
        assert!(bare["dev"].get("sw").is_none());
    }

    #[test]
    fn orchestrator_config_content() {
        let t = topics();
        let (topic, payload) = discovery().orchestrator_config();
        assert_eq!(topic, "homeassistant/device/transcode_orchestrator/config");
        let c = parse(&payload);
        assert_eq!(c["state_topic"], t.orchestrator_stats());
        assert_eq!(c["availability_topic"], t.orchestrator_availability());
        assert_eq!(c["dev"]["sw"], transcode_common::VERSION);
        for key in ["queued_jobs", "running_jobs", "workers_online"] {
            let cmp = &c["cmps"][key];
            assert_eq!(cmp["value_template"], format!("{{{{ value_json.{key} }}}}"));
            assert_eq!(cmp["state_class"], "measurement");
        }
    }

    /// The whole of each payload, key for key, as Home Assistant receives it.
    #[test]
    fn payloads_whole() {
        let version = transcode_common::VERSION;
        let (_, worker) = discovery().worker_config("nas.local", Some(&heartbeat("nas.local")));
        let id = worker_object_id("nas.local");
        let uid = |key: &str| format!("{id}_{key}");
        let want = json!({
            "dev": {
                "ids": [id],
                "name": "nas.local",
                "mf": "transcode-worker",
                "mdl": "Transcode worker (Linux)",
                "sw": "0.1.0",
            },
            "o": { "name": "transcode-worker", "sw": version },
            "availability_topic": "transcode/workers/nas.local/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "state_topic": "transcode/workers/nas.local/heartbeat",
            "cmps": {
                "status": {
                    "p": "sensor",
                    "unique_id": uid("status"),
                    "name": "Status",
                    "device_class": "enum",
                    "options": ["idle", "working", "draining"],
                    "value_template": "{{ value_json.status }}",
                },
                "cpu": {
                    "p": "sensor",
                    "unique_id": uid("cpu"),
                    "name": "CPU",
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                    "value_template": "{{ value_json.cpu_usage }}",
                },
                "job_progress": {
                    "p": "sensor",
                    "unique_id": uid("job_progress"),
                    "name": "Job progress",
                    "state_topic": "transcode/workers/nas.local/job",
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                    "value_template": "{{ value_json.progress }}",
                    "json_attributes_topic": "transcode/workers/nas.local/job",
                    "json_attributes_template": "{{ {'job_id': value_json.get('job_id'), 'stream_url': value_json.get('stream_url'), 'state': value_json.get('state')} | tojson }}",
                },
                "online": {
                    "p": "binary_sensor",
                    "unique_id": uid("online"),
                    "name": "Online",
                    "device_class": "connectivity",
                    "state_topic": "transcode/workers/nas.local/availability",
                    "payload_on": "online",
                    "payload_off": "offline",
                    "availability_topic": "transcode/orchestrator/availability",
                },
                "cancel": {
                    "p": "button",
                    "unique_id": uid("cancel"),
                    "name": "Cancel job",
                    "command_topic": "transcode/workers/nas.local/stop",
                    "payload_press": "CANCEL",
                },
            },
        });
        assert_eq!(parse(&worker), want);

        let counter = |key: &str, name: &str, unit: &str| {
            json!({
                "p": "sensor",
                "unique_id": format!("transcode_orchestrator_{key}"),
                "name": name,
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "value_template": format!("{{{{ value_json.{key} }}}}"),
            })
        };
        let want = json!({
            "dev": {
                "ids": ["transcode_orchestrator"],
                "name": "Transcode orchestrator",
                "mf": "transcode-worker",
                "mdl": "Transcode orchestrator",
                "sw": version,
            },
            "o": { "name": "transcode-worker", "sw": version },
            "availability_topic": "transcode/orchestrator/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "state_topic": "transcode/orchestrator/stats",
            "cmps": {
                "queued_jobs": counter("queued_jobs", "Queued jobs", "jobs"),
                "running_jobs": counter("running_jobs", "Running jobs", "jobs"),
                "workers_online": counter("workers_online", "Workers online", "workers"),
            },
        });
        assert_eq!(parse(&discovery().orchestrator_config().1), want);
    }

    #[test]
    fn remove_and_status_topics() {
        let d = discovery();
        for w in WORKERS {
            let (topic, payload) = d.remove_worker(w);
            assert_eq!(topic, d.worker_config(w, None).0);
            assert!(payload.is_empty());
        }
        assert_eq!(d.ha_status_topic(), "homeassistant/status");
        assert_eq!(
            Discovery::new("ha/", topics()).ha_status_topic(),
            "ha/status"
        );
    }
}
