//! Advertising the embedded broker on the LAN as `_mqtt._tcp`, so workers
//! started without an address find it.

use mdns_sd::{ServiceDaemon, ServiceInfo};
use transcode_common::mqtt_url::{
    MDNS_SERVICE_TYPE as SERVICE_TYPE, MDNS_TXT_PREFIX as TXT_PREFIX,
};

/// A running advertisement; dropping it says goodbye on the network.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Advertises `port` as `_mqtt._tcp`, named "transcode-orchestrator on
/// HOST", on every interface (addresses follow the interfaces as they change).
pub fn advertise(port: u16, topic_prefix: &str, version: &str) -> Result<Advertisement, String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
    let host = hostname_label();
    let instance = format!("transcode-orchestrator on {host}");
    let instance = instance.as_str();
    let properties = [
        (TXT_PREFIX, topic_prefix),
        ("version", version),
        ("app", "transcode-worker"),
    ];
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        instance,
        &format!("{host}.local."),
        "",
        port,
        &properties[..],
    )
    .map_err(|e| format!("cannot describe the mDNS service: {e}"))?
    .enable_addr_auto();
    let fullname = info.get_fullname().to_string();
    daemon
        .register(info)
        .map_err(|e| format!("cannot advertise over mDNS: {e}"))?;
    tracing::info!(instance, port, "broker advertised over mDNS as _mqtt._tcp");
    Ok(Advertisement { daemon, fullname })
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

/// This machine's host name as one DNS label.
fn hostname_label() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    label(&raw)
}

fn label(raw: &str) -> String {
    let l: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let l = l.trim_matches('-').to_string();
    if l.is_empty() {
        "transcode".into()
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels() {
        let cases = [
            ("udoo", "udoo"),
            ("my host.lan\n", "my-host-lan"),
            ("", "transcode"),
            ("--", "transcode"),
        ];
        for (raw, want) in cases {
            assert_eq!(label(raw), want);
        }
    }
}
