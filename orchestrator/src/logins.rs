//! Who may connect to the embedded broker: the orchestrator itself and one
//! login per worker, kept in `state.dir/broker-logins.json` (mode 0600),
//! made at first start. `add-worker` and `revoke-worker` change the file;
//! a running orchestrator reads it again (at most once a second) when it
//! changed, so a revoked worker is refused at its next connection.
//!
//! A login's name is also its MQTT client id: `transcode-orchestrator`, and
//! `worker-{id}` for worker `{id}`, so one worker's login cannot take
//! another's session.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use transcode_common::mqtt_url::BrokerAddr;
use transcode_common::validate;

use crate::secrets;

/// The file's name in `state.dir`.
pub const LOGINS_FILE: &str = "broker-logins.json";
/// The orchestrator's own login (and client id).
pub const ORCHESTRATOR_LOGIN: &str = "transcode-orchestrator";
/// A worker's login is this and its id.
pub const WORKER_PREFIX: &str = "worker-";
/// The worker whose login the first start makes, so that the first join
/// line is ready without a command.
pub const FIRST_WORKER: &str = "first";
/// Random bytes in a password.
const PASSWORD_LEN: usize = 24;
/// How often a running orchestrator looks at the file for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LoginFile {
    /// The orchestrator's password.
    orchestrator: String,
    /// Worker id -> its login.
    #[serde(default)]
    workers: BTreeMap<String, WorkerLogin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WorkerLogin {
    password: String,
    /// Unix ms.
    added_at: u64,
}

/// What one connection attempt was.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Orchestrator,
    Worker(String),
    /// The shared login of `broker.username` (tools, Home Assistant).
    Shared,
    Refused(String),
}

/// The logins as a running orchestrator knows them.
pub struct Logins {
    path: PathBuf,
    /// `broker.username`/`broker.password`, any client id.
    shared: Option<(String, String)>,
    state: Mutex<Loaded>,
}

struct Loaded {
    file: LoginFile,
    checked: Instant,
}

impl Logins {
    /// The logins in `state_dir`, made (with the orchestrator's password)
    /// when there are none.
    pub fn open(state_dir: &Path, shared: Option<(String, String)>) -> anyhow::Result<Logins> {
        let path = state_dir.join(LOGINS_FILE);
        let file = match read(&path)? {
            Some(file) => file,
            None => {
                let file = LoginFile {
                    orchestrator: password()?,
                    workers: BTreeMap::new(),
                };
                write(&path, &file)?;
                tracing::info!(path = %path.display(), "made the broker's logins; add a worker with `transcode-orchestrator add-worker NAME`");
                file
            }
        };
        Ok(Logins {
            path,
            shared,
            state: Mutex::new(Loaded {
                file,
                checked: Instant::now(),
            }),
        })
    }

    /// The logins in `state_dir` if `add-worker` made any, without making
    /// the file: with an external broker they are only the keys the
    /// orchestrator seals its orders to workers with.
    pub fn open_existing(state_dir: &Path) -> anyhow::Result<Option<Logins>> {
        let path = state_dir.join(LOGINS_FILE);
        Ok(read(&path)?.map(|file| Logins {
            path,
            shared: None,
            state: Mutex::new(Loaded {
                file,
                checked: Instant::now(),
            }),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The orchestrator's own password.
    pub fn orchestrator_password(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .orchestrator
            .clone()
    }

    /// Whether a connection may log in: its client id must be its login
    /// (but for the shared login), and the password that login's.
    pub fn check(&self, client_id: &str, username: &str, password: &str) -> Verdict {
        if let Some((user, pass)) = &self.shared {
            if username == user {
                // Never another's client id: rumqttd would hand it that
                // client's session.
                // (The orchestrator's own link to its broker is
                // `transcode-orchestrator-local-...`.)
                if client_id.starts_with(ORCHESTRATOR_LOGIN) || client_id.starts_with(WORKER_PREFIX)
                {
                    return Verdict::Refused(format!(
                        "the shared login {username:?} may not take client id {client_id:?}"
                    ));
                }
                return if secrets::same(password.as_bytes(), pass.as_bytes()) {
                    Verdict::Shared
                } else {
                    Verdict::Refused(format!("wrong password for the shared login {username:?}"))
                };
            }
        }
        if client_id != username {
            return Verdict::Refused(format!(
                "client id {client_id:?} is not its login {username:?}"
            ));
        }
        let state = self.fresh();
        let file = &state.file;
        if username == ORCHESTRATOR_LOGIN {
            return if secrets::same(password.as_bytes(), file.orchestrator.as_bytes()) {
                Verdict::Orchestrator
            } else {
                Verdict::Refused("wrong password for the orchestrator's login".into())
            };
        }
        let Some(id) = username.strip_prefix(WORKER_PREFIX) else {
            return Verdict::Refused(format!("{username:?} is no login here"));
        };
        match file.workers.get(id) {
            Some(login) if secrets::same(password.as_bytes(), login.password.as_bytes()) => {
                Verdict::Worker(id.to_string())
            }
            Some(_) => Verdict::Refused(format!("wrong password for worker {id}")),
            None => Verdict::Refused(format!(
                "worker {id} has no login (never added, or revoked)"
            )),
        }
    }

    /// Worker `id`'s password (the key its orders are sealed with), while
    /// it has a login.
    pub fn password_of(&self, id: &str) -> Option<String> {
        self.fresh()
            .file
            .workers
            .get(id)
            .map(|l| l.password.clone())
    }

    /// The logins, read again first when the file changed (looked at most
    /// once a second).
    fn fresh(&self) -> std::sync::MutexGuard<'_, Loaded> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RELOAD_EVERY {
            state.checked = Instant::now();
            // The contents decide (the file is small): two writes within one
            // tick of the file system's clock keep the same time.
            match read(&self.path) {
                Ok(Some(file)) if file != state.file => {
                    state.file = file;
                    tracing::info!(path = %self.path.display(), "broker logins read again");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{e}; the logins known so far stay"),
            }
        }
        state
    }

    /// Gives worker `id` a new login (replacing an old one) and returns its
    /// password.
    pub fn add_worker(state_dir: &Path, id: &str) -> anyhow::Result<(String, bool)> {
        validate::worker_id(id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let path = state_dir.join(LOGINS_FILE);
        let mut file = read(&path)?.unwrap_or(LoginFile {
            orchestrator: password()?,
            workers: BTreeMap::new(),
        });
        let pass = password()?;
        let replaced = file
            .workers
            .insert(
                id.to_string(),
                WorkerLogin {
                    password: pass.clone(),
                    added_at: transcode_common::unix_ms(),
                },
            )
            .is_some();
        write(&path, &file)?;
        Ok((pass, replaced))
    }

    /// Takes worker `id`'s login away; false when it had none.
    pub fn revoke_worker(state_dir: &Path, id: &str) -> anyhow::Result<bool> {
        let path = state_dir.join(LOGINS_FILE);
        let Some(mut file) = read(&path)? else {
            return Ok(false);
        };
        let had = file.workers.remove(id).is_some();
        if had {
            write(&path, &file)?;
        }
        Ok(had)
    }

    /// The workers that have a login.
    pub fn workers(state_dir: &Path) -> anyhow::Result<Vec<String>> {
        Ok(read(&state_dir.join(LOGINS_FILE))?
            .map(|f| f.workers.into_keys().collect())
            .unwrap_or_default())
    }
}

/// The line a worker joins with: its login and the broker's address.
pub fn join_line(id: &str, password: &str, broker: &BrokerAddr) -> String {
    let scheme = if broker.tls { "mqtts" } else { "mqtt" };
    format!(
        "{scheme}://{WORKER_PREFIX}{id}:{password}@{}:{}",
        transcode_common::net::url_host(&broker.host),
        broker.port
    )
}

/// What a Mosquitto broker needs to know of worker `id`'s login: its lines
/// in an `acl_file`, giving it only its own topics (everything of its own
/// under `workers/{id}/`, and the statuses of the runs it holds, which the
/// orchestrator checks against the holder).
pub fn mosquitto_acl(id: &str, prefix: &str) -> String {
    format!(
        "user {WORKER_PREFIX}{id}\n\
         topic readwrite {prefix}/workers/{id}/#\n\
         topic read {prefix}/orchestrator/availability\n\
         topic write {prefix}/jobs/+/status\n\
         topic write {prefix}/jobs/+/chunks/+\n"
    )
}

fn password() -> anyhow::Result<String> {
    let mut bytes = vec![0u8; PASSWORD_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(secrets::hex(&bytes))
}

fn read(path: &Path) -> anyhow::Result<Option<LoginFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "the broker logins {} are damaged ({e}); fix or delete the file (deleting it revokes every worker)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("cannot read the broker logins {}: {e}", path.display()),
    }
}

fn write(path: &Path, file: &LoginFile) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(file)
        .map_err(|e| anyhow::anyhow!("cannot write the broker logins: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    secrets::write_private(path, &text)
        .map_err(|e| anyhow::anyhow!("cannot write the broker logins {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_login_opens_its_own_session_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let logins = Logins::open(state, Some(("viewer".into(), "look".into()))).unwrap();
        let (nas, replaced) = Logins::add_worker(state, "nas").unwrap();
        assert!(!replaced);
        let (pc, _) = Logins::add_worker(state, "pc").unwrap();
        std::thread::sleep(RELOAD_EVERY);
        let orch = logins.orchestrator_password();
        let cases = [
            (
                "transcode-orchestrator",
                "transcode-orchestrator",
                orch.as_str(),
                Verdict::Orchestrator,
            ),
            (
                "worker-nas",
                "worker-nas",
                nas.as_str(),
                Verdict::Worker("nas".into()),
            ),
            (
                "worker-pc",
                "worker-pc",
                pc.as_str(),
                Verdict::Worker("pc".into()),
            ),
            ("mosq-123", "viewer", "look", Verdict::Shared),
        ];
        for (client, user, pass, want) in cases {
            assert_eq!(logins.check(client, user, pass), want, "{user}");
        }
        let refused = [
            // Another worker's session with one's own login.
            ("worker-pc", "worker-nas", nas.as_str(), "is not its login"),
            (
                "worker-nas",
                "worker-nas",
                pc.as_str(),
                "wrong password for worker nas",
            ),
            ("worker-tv", "worker-tv", nas.as_str(), "no login"),
            (
                "transcode-orchestrator",
                "transcode-orchestrator",
                nas.as_str(),
                "orchestrator",
            ),
            ("mosq-1", "viewer", "nope", "shared login"),
            ("worker-nas", "viewer", "look", "may not take client id"),
            (
                "transcode-orchestrator",
                "viewer",
                "look",
                "may not take client id",
            ),
            (
                "transcode-orchestrator-local-00ff",
                "viewer",
                "look",
                "may not take client id",
            ),
            ("admin", "admin", "x", "no login here"),
        ];
        for (client, user, pass, needle) in refused {
            match logins.check(client, user, pass) {
                Verdict::Refused(why) => assert!(why.contains(needle), "{user}: {why}"),
                other => panic!("{user}: {other:?}"),
            }
        }
        assert_eq!(logins.password_of("pc").as_deref(), Some(pc.as_str()));
        assert_eq!(logins.password_of("tv"), None);
        // Revoked: refused once the running orchestrator sees the file.
        assert!(Logins::revoke_worker(state, "nas").unwrap());
        assert!(!Logins::revoke_worker(state, "nas").unwrap());
        std::thread::sleep(RELOAD_EVERY);
        assert!(matches!(
            logins.check("worker-nas", "worker-nas", &nas),
            Verdict::Refused(_)
        ));
        assert_eq!(Logins::workers(state).unwrap(), ["pc"]);
        // Kept across restarts.
        let again = Logins::open(state, None).unwrap();
        assert_eq!(again.orchestrator_password(), orch);
        assert!(Logins::add_worker(state, "bad/name").is_err());
    }

    #[test]
    fn a_join_line_carries_the_login_and_the_address() {
        let at = |host: &str, port, tls| BrokerAddr {
            host: host.into(),
            port,
            tls,
        };
        let cases = [
            (
                at("192.168.1.10", 1883, false),
                "mqtt://worker-nas:ab12@192.168.1.10:1883",
            ),
            (
                at("2001:db8::5", 1883, false),
                "mqtt://worker-nas:ab12@[2001:db8::5]:1883",
            ),
            (
                at("broker.home", 8883, true),
                "mqtts://worker-nas:ab12@broker.home:8883",
            ),
        ];
        for (addr, want) in cases {
            assert_eq!(join_line("nas", "ab12", &addr), want);
        }
    }

    #[test]
    fn a_mosquitto_acl_gives_a_worker_its_own_topics() {
        assert_eq!(
            mosquitto_acl("nas", "transcode"),
            "user worker-nas\n\
             topic readwrite transcode/workers/nas/#\n\
             topic read transcode/orchestrator/availability\n\
             topic write transcode/jobs/+/status\n\
             topic write transcode/jobs/+/chunks/+\n"
        );
    }
}
