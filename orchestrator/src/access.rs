//! Who may use the HTTP API, and how fast: the API token (made at first
//! start in `state.dir`, sent as `Authorization: Bearer TOKEN`), and a
//! token bucket per client address for submissions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secrets;

/// The token's file name in `state.dir`.
pub const TOKEN_FILE: &str = "api-token";
/// Random bytes in a token.
const TOKEN_LEN: usize = 32;
/// Clients whose buckets are kept; past that, full buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// The API's keys and limits.
pub struct Access {
    token: String,
    path: PathBuf,
    /// `/metrics` wants the token too (`http.metrics_need_token`).
    pub metrics_need_token: bool,
    buckets: Mutex<Buckets>,
}

impl Access {
    /// The token from `state_dir` (made when there is none), and a limit of
    /// `rate` submissions per second per client, `burst` at once.
    pub fn open(
        state_dir: &Path,
        metrics_need_token: bool,
        rate: f64,
        burst: f64,
    ) -> anyhow::Result<Access> {
        let bytes = secrets::load_or_make(state_dir, TOKEN_FILE, TOKEN_LEN, "the API token")?;
        Ok(Access {
            token: secrets::hex(&bytes),
            path: state_dir.join(TOKEN_FILE),
            metrics_need_token,
            buckets: Mutex::new(Buckets::new(rate, burst)),
        })
    }

    /// Writes a new token over the old one; the orchestrator reads it at
    /// its next start.
    pub fn replace_token(state_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
        let (bytes, path) = secrets::replace(state_dir, TOKEN_FILE, TOKEN_LEN, "the API token")?;
        Ok((secrets::hex(&bytes), path))
    }

    /// Where the token is.
    pub fn token_path(&self) -> &Path {
        &self.path
    }

    /// Whether an `Authorization` header carries the token.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|h| h.trim().strip_prefix("Bearer "))
            .is_some_and(|t| secrets::same(t.trim().as_bytes(), self.token.as_bytes()))
    }

    /// The sentence of a `401`.
    pub fn refusal(&self) -> String {
        format!(
            "the API needs its token: send `Authorization: Bearer TOKEN`; the token is in {} on the orchestrator's machine (transcodectl there finds it; elsewhere set TRANSCODE_TOKEN)",
            self.path.display()
        )
    }

    /// Takes one submission from `client`'s allowance, or says how long to
    /// wait.
    pub fn admit(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(client, now)
    }
}

/// A token bucket per client: `burst` submissions at once, refilled at
/// `rate` per second.
#[derive(Debug)]
pub struct Buckets {
    rate: f64,
    burst: f64,
    by_client: HashMap<IpAddr, (f64, Instant)>,
}

impl Buckets {
    pub fn new(rate: f64, burst: f64) -> Buckets {
        Buckets {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            by_client: HashMap::new(),
        }
    }

    pub fn take(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.by_client.len() >= MAX_CLIENTS && !self.by_client.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            self.by_client.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.by_client.len() >= MAX_CLIENTS {
                self.by_client.clear();
            }
        }
        let (tokens, at) = self.by_client.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_opens_the_api_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::open(dir.path(), false, 1.0, 1.0).unwrap();
        let token = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(token.len(), 64);
        let cases = [
            (Some(format!("Bearer {token}")), true),
            (Some(format!("Bearer  {token} ")), true),
            (Some(format!("bearer {token}")), false),
            (Some(format!("Bearer {}", &token[..63])), false),
            (Some(format!("Bearer {token}0")), false),
            (Some("Bearer ".to_string()), false),
            (Some(format!("Basic {token}")), false),
            (None, false),
        ];
        for (header, ok) in cases {
            assert_eq!(a.allows(header.as_deref()), ok, "{header:?}");
        }
        assert!(a
            .refusal()
            .contains(&dir.path().join(TOKEN_FILE).display().to_string()));
        // Kept across restarts, replaced by the command.
        let again = Access::open(dir.path(), false, 1.0, 1.0).unwrap();
        assert!(again.allows(Some(&format!("Bearer {token}"))));
        let (new, _) = Access::replace_token(dir.path()).unwrap();
        let after = Access::open(dir.path(), false, 1.0, 1.0).unwrap();
        assert!(after.allows(Some(&format!("Bearer {new}"))));
        assert!(!after.allows(Some(&format!("Bearer {token}"))));
    }

    #[test]
    fn each_client_gets_its_burst_then_its_rate() {
        let mut b = Buckets::new(2.0, 3.0);
        let t0 = Instant::now();
        let (x, y) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let steps = [
            (x, 0, true),
            (x, 0, true),
            (x, 0, true),
            (x, 0, false),
            // Another client has its own bucket.
            (y, 0, true),
            // Half a second later: one more at 2 per second.
            (x, 500, true),
            (x, 500, false),
        ];
        for (i, (client, ms, ok)) in steps.into_iter().enumerate() {
            assert_eq!(b.take(client, at(ms)).is_ok(), ok, "step {i}");
        }
        let wait = b.take(x, at(500)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Idle long enough: the whole burst again, never more.
        for _ in 0..3 {
            assert!(b.take(x, at(60_000)).is_ok());
        }
        assert!(b.take(x, at(60_000)).is_err());
    }
}
