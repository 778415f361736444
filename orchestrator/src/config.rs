//! The orchestrator's settings (`config/orchestrator.toml` documents every key).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use transcode_common::config::{ConfigError, Validate};
use transcode_common::mqtt_url::{self, BrokerAddr};
use transcode_common::topics::Topics;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OrchestratorConfig {
    pub broker: BrokerConfig,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub scheduler: SchedulerConfig,
    pub registry: RegistryConfig,
    pub state: StateConfig,
    pub homeassistant: HomeAssistantConfig,
    pub media: MediaConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// Run rumqttd inside the orchestrator; false: use `url`.
    pub embedded: bool,
    /// Where the embedded broker listens.
    pub listen: String,
    /// The external broker, when `embedded` is false.
    pub url: String,
    /// Credentials: required from every client by the embedded broker, and
    /// used by the orchestrator's own connection.
    pub username: Option<String>,
    pub password: Option<String>,
    /// For an `mqtts://` broker: the PEM file of the CA(s) that signed its
    /// certificate; empty: this machine's own CA roots.
    pub ca_file: PathBuf,
    /// Advertise the embedded broker over mDNS as `_mqtt._tcp`.
    pub mdns: bool,
    /// Clients the embedded broker accepts at once.
    pub max_connections: usize,
    /// Let clients connect to the embedded broker without a login (a
    /// closed lab); false: the orchestrator's logins only.
    pub allow_anonymous: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: String,
    /// `/metrics` wants the API token too.
    pub metrics_need_token: bool,
    /// Submissions one client address may make per second, on average.
    pub submit_rate: f64,
    /// ... and at once.
    pub submit_burst: u32,
    /// The URL workers reach this listener at (`http://host:port`), when it
    /// is not the listen address (or the LAN address for 0.0.0.0): behind
    /// a port mapping or a reverse proxy.
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// The folder of the films (empty: no library). Workers without their
    /// own copy of a source read it from here.
    pub root: PathBuf,
    /// Serve the files under `root` to workers; unset: whenever `root` is.
    pub serve: Option<bool>,
    /// The ffprobe program that finds the videos' lengths for listings.
    pub ffprobe: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            root: PathBuf::new(),
            serve: None,
            ffprobe: "ffprobe".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    pub topic_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// A worker without a heartbeat for this long is offline (three of its
    /// own intervals, when that is longer).
    pub heartbeat_timeout_s: u64,
    pub max_attempts: u32,
    /// An assigned job that is not `processing` after this long goes to
    /// another worker.
    pub assign_timeout_s: u64,
    /// A `processing` job without a status for this long is stuck and goes
    /// to another worker.
    pub stall_timeout_s: u64,
    /// Most jobs that may wait in the queue; more are refused (`429`).
    pub max_queued_jobs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// A worker offline this long is forgotten: its retained topics are
    /// cleared and Home Assistant removes its device.
    pub forget_after_s: u64,
    /// The longest heartbeat interval a worker may ask for: its own
    /// interval stretches its timeout to three intervals, up to three of
    /// this, whatever its heartbeat claims.
    pub max_heartbeat_interval_s: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            forget_after_s: 7 * 24 * 3600,
            max_heartbeat_interval_s: 3600,
        }
    }
}

/// The longest `state.retention_s` (a year): finished jobs are not kept
/// forever.
pub const MAX_RETENTION_S: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// Where the job store lives.
    pub dir: PathBuf,
    /// Finished jobs are forgotten (and their retained status cleared) after
    /// this long.
    pub retention_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            embedded: true,
            listen: "0.0.0.0:1883".into(),
            url: String::new(),
            username: None,
            password: None,
            ca_file: PathBuf::new(),
            mdns: true,
            max_connections: 1024,
            allow_anonymous: false,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8000".into(),
            metrics_need_token: false,
            submit_rate: 20.0,
            submit_burst: 100,
            public_url: String::new(),
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

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            heartbeat_timeout_s: 45,
            max_attempts: 3,
            assign_timeout_s: 20,
            stall_timeout_s: 120,
            max_queued_jobs: 1000,
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: "state".into(),
            retention_s: 7 * 24 * 3600,
        }
    }
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: true,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{value:?} is not an address like 0.0.0.0:1883"),
        )
    })
}

impl OrchestratorConfig {
    pub fn broker_listen(&self) -> SocketAddr {
        self.broker
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 1883)))
    }

    pub fn http_listen(&self) -> SocketAddr {
        self.http
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8000)))
    }

    /// The external broker (checked by validate when not embedded).
    pub fn broker_url(&self) -> Option<BrokerAddr> {
        mqtt_url::parse(&self.broker.url).ok()
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.mqtt.topic_prefix)
            .unwrap_or_else(|_| Topics::new("transcode").expect("the default prefix is valid"))
    }

    /// Where workers reach the embedded broker: the listen address, or this
    /// machine's LAN address when that is 0.0.0.0.
    pub fn broker_public_addr(&self) -> BrokerAddr {
        if !self.broker.embedded {
            if let Some(addr) = self.broker_url() {
                return addr;
            }
        }
        let listen = self.broker_listen();
        let ip = if listen.ip().is_unspecified() {
            transcode_common::net::lan_address()
        } else {
            listen.ip()
        };
        BrokerAddr {
            host: ip.to_string(),
            port: listen.port(),
            tls: false,
        }
    }

    /// The media root, when there is one.
    pub fn media_root(&self) -> Option<&std::path::Path> {
        (!self.media.root.as_os_str().is_empty()).then_some(self.media.root.as_path())
    }

    /// Whether workers get the library's files over HTTP.
    pub fn media_serves(&self) -> bool {
        self.media_root().is_some() && self.media.serve != Some(false)
    }

    /// Where workers reach the HTTP listener: `http.public_url`, else the
    /// listen address (this machine's LAN address when that is 0.0.0.0).
    pub fn public_url(&self) -> String {
        if !self.http.public_url.is_empty() {
            return self.http.public_url.trim_end_matches('/').to_string();
        }
        let listen = self.http_listen();
        let ip = if listen.ip().is_unspecified() {
            transcode_common::net::lan_address()
        } else {
            listen.ip()
        };
        format!(
            "http://{}:{}",
            transcode_common::net::url_host(&ip.to_string()),
            listen.port()
        )
    }

    pub fn credentials(&self) -> Option<(String, String)> {
        self.broker
            .username
            .clone()
            .map(|u| (u, self.broker.password.clone().unwrap_or_default()))
    }
}

impl Validate for OrchestratorConfig {
    fn validate(&mut self) -> Result<(), ConfigError> {
        parse_addr("broker.listen", &self.broker.listen)?;
        parse_addr("http.listen", &self.http.listen)?;
        if !self.broker.embedded {
            if self.broker.url.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "broker.url",
                    "is required when broker.embedded = false (e.g. mqtt://homeassistant.local:1883)",
                ));
            }
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
        if self
            .broker
            .username
            .as_deref()
            .is_some_and(|u| u.is_empty())
        {
            return Err(ConfigError::invalid(
                "broker.username",
                "must not be empty when set",
            ));
        }
        if self.broker.max_connections == 0 {
            return Err(ConfigError::invalid(
                "broker.max_connections",
                "must be at least 1 (0 would refuse every client)",
            ));
        }
        Topics::new(&self.mqtt.topic_prefix)
            .map_err(|e| ConfigError::invalid("mqtt.topic_prefix", e))?;
        if !(1..=86_400).contains(&self.scheduler.heartbeat_timeout_s) {
            return Err(ConfigError::invalid(
                "scheduler.heartbeat_timeout_s",
                "must be between 1 and 86400 seconds",
            ));
        }
        if !(1..=100).contains(&self.scheduler.max_attempts) {
            return Err(ConfigError::invalid(
                "scheduler.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if !(1..=3600).contains(&self.scheduler.assign_timeout_s) {
            return Err(ConfigError::invalid(
                "scheduler.assign_timeout_s",
                "must be between 1 and 3600 seconds",
            ));
        }
        if !(5..=86_400).contains(&self.scheduler.stall_timeout_s) {
            return Err(ConfigError::invalid(
                "scheduler.stall_timeout_s",
                "must be between 5 and 86400 seconds",
            ));
        }
        if !(1..=1_000_000).contains(&self.scheduler.max_queued_jobs) {
            return Err(ConfigError::invalid(
                "scheduler.max_queued_jobs",
                "must be between 1 and 1000000",
            ));
        }
        if !(self.http.submit_rate.is_finite() && self.http.submit_rate > 0.0) {
            return Err(ConfigError::invalid(
                "http.submit_rate",
                "must be a positive number of submissions per second",
            ));
        }
        if self.http.submit_burst == 0 {
            return Err(ConfigError::invalid(
                "http.submit_burst",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_RETENTION_S).contains(&self.state.retention_s) {
            return Err(ConfigError::invalid(
                "state.retention_s",
                format!("must be between 1 second and a year ({MAX_RETENTION_S} s)"),
            ));
        }
        if self.registry.forget_after_s == 0 {
            return Err(ConfigError::invalid(
                "registry.forget_after_s",
                "must be at least 1 second",
            ));
        }
        if !(1..=86_400).contains(&self.registry.max_heartbeat_interval_s) {
            return Err(ConfigError::invalid(
                "registry.max_heartbeat_interval_s",
                "must be between 1 and 86400 seconds",
            ));
        }
        if self.state.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("state.dir", "must name a folder"));
        }
        Topics::new(&self.homeassistant.discovery_prefix)
            .map_err(|e| ConfigError::invalid("homeassistant.discovery_prefix", e))?;
        let url = &self.http.public_url;
        if !url.is_empty()
            && (!url.starts_with("http://")
                || url.len() <= "http://".len()
                || url.contains(['?', '#', ' ']))
        {
            return Err(ConfigError::invalid(
                "http.public_url",
                format!("{url:?} is not a URL like http://udoo.local:8000"),
            ));
        }
        if self.media.serve == Some(true) && self.media_root().is_none() {
            return Err(ConfigError::invalid(
                "media.serve",
                "needs media.root: the folder whose files workers may read",
            ));
        }
        if self.media.ffprobe.trim().is_empty() {
            return Err(ConfigError::invalid(
                "media.ffprobe",
                "must name the ffprobe program",
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

    fn load(vars: &[(&str, &str)]) -> Result<OrchestratorConfig, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(None, Some(env))
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = load(&[]).unwrap();
        assert!(c.broker.embedded);
        assert_eq!(c.broker.listen, "0.0.0.0:1883");
        assert_eq!(c.http.listen, "0.0.0.0:8000");
        assert_eq!(c.scheduler.heartbeat_timeout_s, 45);
        assert_eq!(c.scheduler.max_attempts, 3);
        assert!(c.broker.mdns && c.homeassistant.enabled);
        assert_eq!(c.homeassistant.discovery_prefix, "homeassistant");
        assert!(c.media_root().is_none() && !c.media_serves());
    }

    #[test]
    fn media_is_served_when_a_root_is_set() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("TRANSCODE_MEDIA__ROOT", "/srv/media")], true),
            (
                &[
                    ("TRANSCODE_MEDIA__ROOT", "/srv/media"),
                    ("TRANSCODE_MEDIA__SERVE", "false"),
                ],
                false,
            ),
            (&[("TRANSCODE_MEDIA__SERVE", "false")], false),
        ];
        for (vars, serves) in cases {
            assert_eq!(load(vars).unwrap().media_serves(), *serves, "{vars:?}");
        }
        let c = load(&[("TRANSCODE_HTTP__LISTEN", "127.0.0.1:8001")]).unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:8001");
        let c = load(&[("TRANSCODE_HTTP__PUBLIC_URL", "http://udoo.local:80/")]).unwrap();
        assert_eq!(c.public_url(), "http://udoo.local:80");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TRANSCODE_BROKER__LISTEN", "nowhere")], "broker.listen"),
            (&[("TRANSCODE_HTTP__LISTEN", "8000")], "http.listen"),
            (&[("TRANSCODE_BROKER__EMBEDDED", "false")], "broker.url"),
            (
                &[
                    ("TRANSCODE_BROKER__EMBEDDED", "false"),
                    ("TRANSCODE_BROKER__URL", "ftp://x"),
                ],
                "broker.url",
            ),
            (&[("TRANSCODE_BROKER__PASSWORD", "x")], "broker.password"),
            (
                &[("TRANSCODE_BROKER__MAX_CONNECTIONS", "0")],
                "broker.max_connections",
            ),
            (
                &[("TRANSCODE_SCHEDULER__HEARTBEAT_TIMEOUT_S", "0")],
                "scheduler.heartbeat_timeout_s",
            ),
            (
                &[("TRANSCODE_SCHEDULER__MAX_ATTEMPTS", "lots")],
                "scheduler.max_attempts",
            ),
            (
                &[("TRANSCODE_MQTT__TOPIC_PREFIX", "#")],
                "mqtt.topic_prefix",
            ),
            (
                &[("TRANSCODE_HOMEASSISTANT__DISCOVERY_PREFIX", "")],
                "homeassistant.discovery_prefix",
            ),
            (&[("TRANSCODE_SCHEDULER__TYPO", "1")], "scheduler.typo"),
            (&[("TRANSCODE_MEDIA__SERVE", "true")], "media.serve"),
            (
                &[("TRANSCODE_SCHEDULER__MAX_QUEUED_JOBS", "0")],
                "scheduler.max_queued_jobs",
            ),
            (&[("TRANSCODE_HTTP__SUBMIT_RATE", "0")], "http.submit_rate"),
            (
                &[("TRANSCODE_HTTP__SUBMIT_BURST", "0")],
                "http.submit_burst",
            ),
            (&[("TRANSCODE_MEDIA__FFPROBE", " ")], "media.ffprobe"),
            (
                &[("TRANSCODE_HTTP__PUBLIC_URL", "udoo:8000")],
                "http.public_url",
            ),
            (
                &[("TRANSCODE_HTTP__PUBLIC_URL", "https://udoo")],
                "http.public_url",
            ),
        ];
        for (vars, key) in cases {
            let err = load(vars).expect_err(key);
            assert!(err.to_string().contains(key), "{vars:?}: {err}");
        }
    }
}
