//! The real Mosquitto command-line clients, as a person watching the system
//! would use them.

use std::process::{Command, Stdio};
use std::time::Duration;

/// One line of `mosquitto_sub -v`: topic and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
}

fn base(program: &str, port: u16) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null());
    cmd
}

/// `mosquitto_sub -v -t TOPIC... -C count -W timeout`: the messages that
/// arrived, at most `count`.
pub fn sub(port: u16, topics: &[&str], count: usize, timeout: Duration) -> Vec<Message> {
    let mut cmd = base("mosquitto_sub", port);
    for t in topics {
        cmd.args(["-t", t]);
    }
    cmd.args([
        "-v",
        "-C",
        &count.to_string(),
        "-W",
        &timeout.as_secs().max(1).to_string(),
    ]);
    let out = cmd.output().expect("mosquitto_sub runs");
    parse_lines(&String::from_utf8_lossy(&out.stdout))
}

/// The retained message on `topic`, if any (`--retained-only`).
pub fn retained(port: u16, topic: &str) -> Option<String> {
    retained_as(port, &[], topic)
}

/// [`retained`] as the client `args` name (a login).
pub fn retained_as(port: u16, args: &[&str], topic: &str) -> Option<String> {
    let mut cmd = base("mosquitto_sub", port);
    cmd.args(args)
        .args(["-t", topic, "-v", "-C", "1", "-W", "2", "--retained-only"]);
    let out = cmd.output().expect("mosquitto_sub runs");
    parse_lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .next()
        .map(|m| m.payload)
}

fn parse_lines(text: &str) -> Vec<Message> {
    text.lines()
        .filter_map(|l| {
            let (topic, payload) = l.split_once(' ').unwrap_or((l, ""));
            (!topic.is_empty()).then(|| Message {
                topic: topic.to_string(),
                payload: payload.to_string(),
            })
        })
        .collect()
}

/// `mosquitto_pub -f FILE`: publishes any bytes, retained or not. Returns
/// whether mosquitto_pub succeeded.
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) -> bool {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), payload).expect("payload written");
    let mut cmd = base("mosquitto_pub", port);
    cmd.args(["-t", topic, "-q", "1", "-f"]).arg(file.path());
    if retain {
        cmd.arg("-r");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// `mosquitto_sub ARGS -t TOPIC -C 1 -W 5`: the first message on `topic` as
/// a client with `args` (a login, a client id), or its refusal.
pub fn first_as(port: u16, args: &[&str], topic: &str) -> std::process::Output {
    let mut cmd = base("mosquitto_sub", port);
    cmd.args(args)
        .args(["-t", topic, "-C", "1", "-W", "5"])
        .output()
        .expect("mosquitto_sub runs")
}

/// A `mosquitto_sub -v` left running in the background, writing what it
/// receives to a file; killed on drop.
pub struct Watcher {
    proc: crate::Proc,
}

impl Watcher {
    pub fn start(port: u16, topic: &str, dir: &std::path::Path, name: &str) -> Watcher {
        Watcher::start_as(port, &[], topic, dir, name)
    }

    /// [`Watcher::start`] as the client `args` name (a login, a client id).
    pub fn start_as(
        port: u16,
        args: &[&str],
        topic: &str,
        dir: &std::path::Path,
        name: &str,
    ) -> Watcher {
        let program = std::path::PathBuf::from("mosquitto_sub");
        let port = port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-t", topic, "-v"];
        all.extend_from_slice(args);
        let proc = crate::Proc::spawn(name, &program, &all, &[], dir);
        Watcher { proc }
    }

    /// [`Watcher::start_as`], returning once the retained message on `ready`
    /// arrived: the subscription stands, and nothing published after this
    /// returns can pass it by.
    pub fn start_ready(
        port: u16,
        args: &[&str],
        topic: &str,
        ready: &str,
        dir: &std::path::Path,
        name: &str,
    ) -> Watcher {
        let w = Watcher::start_as(port, args, topic, dir, name);
        crate::wait_until(
            Duration::from_secs(20),
            &format!("{name} to be subscribed (the retained {ready})"),
            || w.messages().iter().any(|m| m.topic == ready).then_some(()),
        );
        w
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Message> {
        parse_lines(&self.proc.log())
    }
}
