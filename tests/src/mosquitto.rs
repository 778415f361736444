//! A real Mosquitto on a free loopback port: the house broker of the tests
//! on external brokers, and a foreign broker beside ours on mDNS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{wait_until, Proc};

/// The broker's program. Debian puts it in /usr/sbin, which a user's PATH
/// may lack.
pub fn program() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let p = Path::new(dir).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    panic!("mosquitto is not installed: run ./dev setup (or apt-get install mosquitto)");
}

/// Starts Mosquitto as `name` with the configuration lines `config` (which
/// name the listener on `port`), without persistence and logging to its
/// [`Proc`] log (`dir/name.log`), and waits until `port` accepts
/// connections.
pub fn start(name: &str, dir: &Path, port: u16, config: &str) -> Proc {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!("persistence false\nlog_dest stderr\n{config}\n"),
    )
    .expect("mosquitto's configuration");
    let conf_arg = conf.display().to_string();
    let mut p = Proc::spawn(name, &program(), &["-c", &conf_arg], &[], dir);
    wait_until(Duration::from_secs(10), "mosquitto to listen", || {
        assert!(p.is_running(), "mosquitto exited:\n{}", p.log());
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(drop)
    });
    p
}
