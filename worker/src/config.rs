//! The worker's settings (`config/worker.toml` documents every key).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use transcode_common::config::{ConfigError, Validate};
use transcode_common::{mqtt_url, topics::Topics, validate};

use crate::probe::Family;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Name of this worker in topics and logs; empty means the host name.
    pub worker_id: String,
    pub broker: BrokerConfig,
    pub mqtt: MqttConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub transcode: TranscodeConfig,
    pub heartbeat: HeartbeatConfig,
    pub worker: WorkerSection,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSection {
    /// With this worker's own login, also take orders (assignments,
    /// cancels) the orchestrator did not seal with it: anyone on the broker
    /// can send them.
    pub accept_unsigned_jobs: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// `mqtt://host:port` of the broker; empty: find it over mDNS.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// For an `mqtts://` broker: the PEM file of the CA(s) that signed its
    /// certificate; empty: this machine's own CA roots.
    pub ca_file: PathBuf,
    /// MQTT keepalive; the broker declares a hung worker dead (and sends its
    /// last will) after 1.5 times this.
    pub keepalive_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// First level(s) of every topic; must match the orchestrator's.
    pub topic_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Where the HLS server listens.
    pub listen: String,
    /// Host put into stream URLs and heartbeats; empty: the LAN address.
    pub advertise: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// The worker's own copy of the media: a job's `source_path` is read
    /// under this folder (and only here) when it holds the file; otherwise
    /// from the orchestrator. Empty: no local media at all.
    pub root: PathBuf,
}

impl MediaConfig {
    /// The folder, when one is set.
    pub fn root(&self) -> Option<PathBuf> {
        (!self.root.as_os_str().is_empty()).then(|| self.root.clone())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscodeConfig {
    pub ffmpeg: String,
    pub ffprobe: String,
    /// Where HLS outputs are written; empty: a folder in the system's temp dir.
    pub output_dir: PathBuf,
    /// `auto` (probe everything), `none` (software only), or a list of
    /// families to probe (`nvenc`, `qsv`, `vaapi`, `amf`, `videotoolbox`,
    /// `v4l2m2m`), as a TOML array or a comma-separated string.
    pub hw_accel: HwAccelValue,
    pub max_jobs: u32,
    /// Threads one FFmpeg may use (decoding, filters and encoding each);
    /// 0: FFmpeg's choice (every core).
    pub threads: u32,
    /// Segment length of a job whose first run happens here.
    pub segment_seconds: u32,
    /// Seconds an output is kept after the last request for its files.
    pub keep_outputs_s: u64,
    /// Routing weight: among workers with the same kind of encoder (hardware
    /// or software), a higher weight wins before CPU load does.
    pub weight: f64,
    /// How long one encoder's test encode may take before it counts as failed.
    pub probe_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HeartbeatConfig {
    pub interval_s: u64,
}

/// `transcode.hw_accel` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HwAccelValue {
    One(String),
    Many(Vec<String>),
}

/// `transcode.hw_accel` as understood.
#[derive(Debug, Clone, PartialEq)]
pub enum HwAccel {
    Auto,
    None,
    Only(Vec<Family>),
}

impl HwAccelValue {
    pub fn parse(&self) -> Result<HwAccel, String> {
        let items: Vec<String> = match self {
            HwAccelValue::One(s) => s
                .split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            HwAccelValue::Many(v) => v.iter().map(|p| p.trim().to_ascii_lowercase()).collect(),
        };
        match items.as_slice() {
            [one] if one == "auto" => return Ok(HwAccel::Auto),
            [one] if one == "none" || one == "software" => return Ok(HwAccel::None),
            [] => return Ok(HwAccel::None),
            _ => {}
        }
        let mut families = Vec::new();
        for item in &items {
            let family = Family::from_name(item).ok_or_else(|| {
                format!(
                    "{item:?} is not auto, none, or one of {}",
                    Family::HARDWARE
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if !families.contains(&family) {
                families.push(family);
            }
        }
        Ok(HwAccel::Only(families))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: String::new(),
            username: None,
            password: None,
            ca_file: PathBuf::new(),
            keepalive_s: 5,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            topic_prefix: "transcode".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".into(),
            advertise: String::new(),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            root: PathBuf::new(),
        }
    }
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            output_dir: PathBuf::new(),
            hw_accel: HwAccelValue::One("auto".into()),
            max_jobs: 1,
            threads: 0,
            segment_seconds: 4,
            keep_outputs_s: 3600,
            weight: 1.0,
            probe_timeout_s: 10,
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig { interval_s: 15 }
    }
}

impl WorkerConfig {
    pub fn http_listen(&self) -> SocketAddr {
        // Checked in validate().
        self.http
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8080)))
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.mqtt.topic_prefix)
            .unwrap_or_else(|_| Topics::new("transcode").expect("the default prefix is valid"))
    }

    pub fn hw_accel(&self) -> HwAccel {
        self.transcode.hw_accel.parse().unwrap_or(HwAccel::Auto)
    }
}

impl Validate for WorkerConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.worker_id.trim().is_empty() {
            let host = sysinfo::System::host_name().unwrap_or_default();
            self.worker_id = validate::worker_id_from_hostname(&host);
        }
        validate::worker_id(&self.worker_id).map_err(|e| ConfigError::invalid("worker_id", e))?;
        if !self.broker.url.trim().is_empty() {
            let addr = mqtt_url::parse(&self.broker.url)
                .map_err(|e| ConfigError::invalid("broker.url", e))?;
            transcode_common::mqtt::tls_for(&addr, &self.broker.ca_file)
                .map_err(|e| ConfigError::invalid("broker.ca_file", e))?;
        }
        if self.broker.password.is_some() && self.broker.username.is_none() {
            return Err(ConfigError::invalid(
                "broker.password",
                "a password needs broker.username too",
            ));
        }
        if !(1..=3600).contains(&self.broker.keepalive_s) {
            return Err(ConfigError::invalid(
                "broker.keepalive_s",
                "must be between 1 and 3600 seconds",
            ));
        }
        Topics::new(&self.mqtt.topic_prefix)
            .map_err(|e| ConfigError::invalid("mqtt.topic_prefix", e))?;
        self.http.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "http.listen",
                format!("{:?} is not an address like 0.0.0.0:8080", self.http.listen),
            )
        })?;
        if self.http.advertise.contains(['/', ' ', '@']) {
            return Err(ConfigError::invalid(
                "http.advertise",
                "must be a bare host name or IP address",
            ));
        }
        if self.transcode.ffmpeg.trim().is_empty() {
            return Err(ConfigError::invalid(
                "transcode.ffmpeg",
                "must name the ffmpeg program",
            ));
        }
        if self.transcode.ffprobe.trim().is_empty() {
            return Err(ConfigError::invalid(
                "transcode.ffprobe",
                "must name the ffprobe program",
            ));
        }
        if self.transcode.output_dir.as_os_str().is_empty() {
            self.transcode.output_dir =
                std::env::temp_dir().join(format!("transcode-worker-{}", self.worker_id));
        }
        self.transcode
            .hw_accel
            .parse()
            .map_err(|e| ConfigError::invalid("transcode.hw_accel", e))?;
        if !(1..=64).contains(&self.transcode.max_jobs) {
            return Err(ConfigError::invalid(
                "transcode.max_jobs",
                "must be between 1 and 64",
            ));
        }
        if self.transcode.threads > 256 {
            return Err(ConfigError::invalid(
                "transcode.threads",
                "must be between 0 (FFmpeg's choice) and 256",
            ));
        }
        if !(1..=60).contains(&self.transcode.segment_seconds) {
            return Err(ConfigError::invalid(
                "transcode.segment_seconds",
                "must be between 1 and 60",
            ));
        }
        if !self.transcode.weight.is_finite()
            || self.transcode.weight <= 0.0
            || self.transcode.weight > 1000.0
        {
            return Err(ConfigError::invalid(
                "transcode.weight",
                "must be a number above 0 and at most 1000",
            ));
        }
        if !(1..=300).contains(&self.transcode.probe_timeout_s) {
            return Err(ConfigError::invalid(
                "transcode.probe_timeout_s",
                "must be between 1 and 300 seconds",
            ));
        }
        if !(1..=3600).contains(&self.heartbeat.interval_s) {
            return Err(ConfigError::invalid(
                "heartbeat.interval_s",
                "must be between 1 and 3600 seconds",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use transcode_common::config::load_with_env;

    fn load(vars: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(None, Some(env))
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(&[]).unwrap();
        assert!(!c.worker_id.is_empty());
        assert_eq!(c.heartbeat.interval_s, 15);
        assert_eq!(c.transcode.max_jobs, 1);
        assert_eq!(c.transcode.segment_seconds, 4);
        assert_eq!(c.hw_accel(), HwAccel::Auto);
        assert!(!c.transcode.output_dir.as_os_str().is_empty());
    }

    #[test]
    fn environment_overrides() {
        let c = load(&[
            ("TRANSCODE_WORKER_ID", "nas"),
            ("TRANSCODE_HTTP__LISTEN", "127.0.0.1:8001"),
            ("TRANSCODE_TRANSCODE__HW_ACCEL", "nvenc, qsv"),
            ("TRANSCODE_BROKER__URL", "mqtt://udoo:1883"),
        ])
        .unwrap();
        assert_eq!(c.worker_id, "nas");
        assert_eq!(c.http_listen().port(), 8001);
        assert_eq!(
            c.hw_accel(),
            HwAccel::Only(vec![Family::Nvenc, Family::Qsv])
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("TRANSCODE_WORKER_ID", "a/b"),
            ("TRANSCODE_HTTP__LISTEN", "everywhere"),
            ("TRANSCODE_BROKER__URL", "http://x"),
            ("TRANSCODE_BROKER__KEEPALIVE_S", "0"),
            ("TRANSCODE_TRANSCODE__HW_ACCEL", "gpu"),
            ("TRANSCODE_TRANSCODE__MAX_JOBS", "0"),
            ("TRANSCODE_TRANSCODE__SEGMENT_SECONDS", "0"),
            ("TRANSCODE_TRANSCODE__WEIGHT", "-1"),
            ("TRANSCODE_HEARTBEAT__INTERVAL_S", "0"),
            ("TRANSCODE_HEARTBEAT__INTERVAL_S", "often"),
            ("TRANSCODE_MQTT__TOPIC_PREFIX", "a/+"),
            ("TRANSCODE_BROKER__PASSWORD", "secret"),
        ];
        for (var, value) in cases {
            let key = var
                .strip_prefix("TRANSCODE_")
                .unwrap_or(var)
                .replace("__", ".")
                .to_ascii_lowercase();
            let err = load(&[(var, value)]).expect_err(var);
            assert!(err.to_string().contains(&key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn hw_accel_values() {
        let cases: &[(HwAccelValue, Option<HwAccel>)] = &[
            (HwAccelValue::One("auto".into()), Some(HwAccel::Auto)),
            (HwAccelValue::One("none".into()), Some(HwAccel::None)),
            (HwAccelValue::One("".into()), Some(HwAccel::None)),
            (
                HwAccelValue::One("VAAPI".into()),
                Some(HwAccel::Only(vec![Family::Vaapi])),
            ),
            (
                HwAccelValue::Many(vec!["nvenc".into(), "nvenc".into(), "amf".into()]),
                Some(HwAccel::Only(vec![Family::Nvenc, Family::Amf])),
            ),
            (HwAccelValue::One("cuda".into()), None),
            (
                HwAccelValue::Many(vec!["auto".into(), "nvenc".into()]),
                None,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(value.parse().ok(), *want, "{value:?}");
        }
    }
}
