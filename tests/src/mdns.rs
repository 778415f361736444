//! Advertising a broker over mDNS from the test process, as a house broker
//! with an avahi service file would be, under a name no other test uses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceInfo};
use transcode_common::mqtt_url::MDNS_SERVICE_TYPE;

/// A running advertisement; dropping it says goodbye.
pub struct Advertised {
    daemon: ServiceDaemon,
    /// The instance's full name, as workers log it.
    pub fullname: String,
}

/// An instance name made of `label`, this process and a counter.
pub fn unique_instance(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Advertises `127.0.0.1:port` as `_mqtt._tcp` named `instance` with the
/// TXT entries `txt`.
pub fn advertise(instance: &str, port: u16, txt: &[(&str, &str)]) -> Advertised {
    let daemon = ServiceDaemon::new().expect("an mDNS daemon");
    let host = format!(
        "{}.local.",
        instance.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let info = ServiceInfo::new(MDNS_SERVICE_TYPE, instance, &host, "127.0.0.1", port, txt)
        .expect("a service record");
    let fullname = info.get_fullname().to_string();
    daemon.register(info).expect("the advertisement");
    Advertised { daemon, fullname }
}

impl Drop for Advertised {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}
