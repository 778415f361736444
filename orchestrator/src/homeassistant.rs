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
//! Keys: the device-level structure uses the abbreviations of HA's own
//! example (`dev` with `ids`/`name`/`mf`/`mdl`/`sw`, `o`, `cmps`, `p`); every
//! entity option uses its full name, so `mosquitto_sub` output stays readable.

use serde_json::{json, Map, Value};
use transcode_common::topics::{Topics, OFFLINE, ONLINE};
use transcode_common::wire::{self, Heartbeat, Os, WorkerStatus};

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

    fn origin(&self) -> Value {
        json!({ "name": PRODUCT, "sw": self.version })
    }

    /// (topic, payload) of the retained device config for one worker.
    pub fn worker_config(
        &self,
        worker_id: &str,
        heartbeat: Option<&Heartbeat>,
    ) -> (String, Vec<u8>) {
        let object_id = worker_object_id(worker_id);
        let uid = |component: &str| format!("{object_id}_{component}");
        let t = &self.topics;

        let mut device = Map::new();
        device.insert("ids".into(), json!([object_id]));
        device.insert("name".into(), json!(worker_id));
        device.insert("mf".into(), json!(PRODUCT));
        let model = match heartbeat {
            Some(hb) => format!("Transcode worker ({})", os_name(hb.os)),
            None => "Transcode worker".to_string(),
        };
        device.insert("mdl".into(), json!(model));
        if let Some(version) = heartbeat.and_then(|hb| hb.version.as_deref()) {
            device.insert("sw".into(), json!(version));
        }

        let statuses: Vec<&str> = [
            WorkerStatus::Idle,
            WorkerStatus::Working,
            WorkerStatus::Draining,
        ]
        .iter()
        .map(WorkerStatus::as_str)
        .collect();
        let job_topic = t.worker_job(worker_id);

        let payload = json!({
            "dev": device,
            "o": self.origin(),
            "availability_topic": t.worker_availability(worker_id),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "state_topic": t.worker_heartbeat(worker_id),
            "cmps": {
                "status": {
                    "p": "sensor",
                    "unique_id": uid("status"),
                    "name": "Status",
                    "device_class": "enum",
                    "options": statuses,
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
                    "state_topic": job_topic,
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                    "value_template": "{{ value_json.progress }}",
                    "json_attributes_topic": job_topic,
                    // `.get` gives null for a missing key (the idle payload has
                    // no job_id); a plain `value_json.job_id` would break tojson.
                    "json_attributes_template": "{{ {'job_id': value_json.get('job_id'), 'stream_url': value_json.get('stream_url'), 'state': value_json.get('state')} | tojson }}",
                },
                "online": {
                    "p": "binary_sensor",
                    "unique_id": uid("online"),
                    "name": "Online",
                    "device_class": "connectivity",
                    "state_topic": t.worker_availability(worker_id),
                    "payload_on": ONLINE,
                    "payload_off": OFFLINE,
                    // Its own availability: "off" when the worker is gone,
                    // "unavailable" only when the orchestrator is.
                    "availability_topic": t.orchestrator_availability(),
                },
                "cancel": {
                    "p": "button",
                    "unique_id": uid("cancel"),
                    "name": "Cancel job",
                    "command_topic": t.worker_stop(worker_id),
                    "payload_press": CANCEL_PAYLOAD,
                },
            },
        });
        (self.config_topic(&object_id), wire::encode(&payload))
    }

    /// (topic, empty payload): removes the worker's device from Home
    /// Assistant. Publish it retained, so the retained config is cleared too.
    pub fn remove_worker(&self, worker_id: &str) -> (String, Vec<u8>) {
        (self.config_topic(&worker_object_id(worker_id)), Vec::new())
    }

    /// (topic, payload) of the orchestrator's own device config.
    pub fn orchestrator_config(&self) -> (String, Vec<u8>) {
        let t = &self.topics;
        let counter = |key: &str, name: &str, unit: &str| {
            json!({
                "p": "sensor",
                "unique_id": format!("{ORCHESTRATOR_OBJECT_ID}_{key}"),
                "name": name,
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "value_template": format!("{{{{ value_json.{key} }}}}"),
            })
        };
        let payload = json!({
            "dev": {
                "ids": [ORCHESTRATOR_OBJECT_ID],
                "name": "Transcode orchestrator",
                "mf": PRODUCT,
                "mdl": "Transcode orchestrator",
                "sw": self.version,
            },
            "o": self.origin(),
            "availability_topic": t.orchestrator_availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "state_topic": t.orchestrator_stats(),
            "cmps": {
                "queued_jobs": counter("queued_jobs", "Queued jobs", "jobs"),
                "running_jobs": counter("running_jobs", "Running jobs", "jobs"),
                "workers_online": counter("workers_online", "Workers online", "workers"),
            },
        });
        (
            self.config_topic(ORCHESTRATOR_OBJECT_ID),
            wire::encode(&payload),
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
