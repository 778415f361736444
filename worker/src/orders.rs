//! Which orders a worker takes (assignments, cancels, output notices): the
//! embedded broker has no access rules, so anyone with a login could
//! publish on our topics. The orchestrator seals every order to a worker
//! that has its own login (`worker-{id}`) with its password
//! (`transcode_common::seal`); such a worker refuses any other order unless
//! `worker.accept_unsigned_jobs`. Without its own login (a lab without
//! logins, an external broker whose ACL decides) orders are taken as sent.

use std::borrow::Cow;

use transcode_common::seal::{self, SealError};

/// The worker's rule for orders.
#[derive(Debug, Clone)]
pub struct Orders {
    /// Our login's password, when we have one.
    key: Option<Vec<u8>>,
    accept_unsigned: bool,
}

impl Orders {
    pub fn new(password: Option<&str>, accept_unsigned: bool) -> Orders {
        Orders {
            key: password
                .filter(|p| !p.is_empty())
                .map(|p| p.as_bytes().to_vec()),
            accept_unsigned,
        }
    }

    /// The order as the orchestrator wrote it, or why it is refused; `now`
    /// (unix ms) tells a fresh seal from a replayed one.
    pub fn open<'a>(
        &self,
        topic: &str,
        payload: &'a [u8],
        now: u64,
    ) -> Result<Cow<'a, [u8]>, String> {
        // Without its own login the worker has no key: the broker's own
        // rules (anonymous lab, an external broker's ACL) decide.
        let Some(key) = &self.key else {
            return Ok(Cow::Borrowed(payload));
        };
        match seal::open(payload, key, topic) {
            Ok(original) => {
                let at = serde_json::from_slice::<serde_json::Value>(&original)
                    .ok()
                    .and_then(|v| v.get(seal::SEALED_AT).and_then(|t| t.as_u64()));
                match at {
                    Some(at) if at.abs_diff(now) <= seal::MAX_AGE_MS => Ok(Cow::Owned(original)),
                    Some(at) => Err(format!(
                        "it was sealed {} s from now (a replay, or this machine's clock is off): at most {} s are taken",
                        (at as i128 - now as i128) / 1000,
                        seal::MAX_AGE_MS / 1000
                    )),
                    None => Err("its seal carries no time".into()),
                }
            }
            Err(SealError::Unsigned) if self.accept_unsigned => Ok(Cow::Borrowed(payload)),
            Err(e @ SealError::Unsigned) => Err(format!(
                "{e}: only the orchestrator's sealed orders are taken (worker.accept_unsigned_jobs = true takes others)"
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sealed_orders_pass_unless_unsigned_ones_are_allowed() {
        let topic = "transcode/workers/nas/jobs";
        let now = 1_800_000_000_000u64;
        let stamped = format!(r#"{{"job_id":"x","sealed_at":{now}}}"#);
        let order: &[u8] = stamped.as_bytes();
        let sealed = seal::seal(order, b"pw", topic);
        let forged = seal::seal(order, b"other", topic);
        let stale = seal::seal(
            format!(
                r#"{{"job_id":"x","sealed_at":{}}}"#,
                now - seal::MAX_AGE_MS - 1
            )
            .as_bytes(),
            b"pw",
            topic,
        );
        let timeless = seal::seal(br#"{"job_id":"x"}"#, b"pw", topic);
        // (rule, payload) -> the order, or a word of the refusal
        type Case<'a> = (Orders, &'a [u8], Result<&'a [u8], &'a str>);
        let cases: [Case; 10] = [
            (Orders::new(Some("pw"), false), &sealed, Ok(order)),
            (
                Orders::new(Some("pw"), false),
                order,
                Err("only the orchestrator's"),
            ),
            (
                Orders::new(Some("pw"), false),
                &forged,
                Err("does not match"),
            ),
            (Orders::new(Some("pw"), true), order, Ok(order)),
            (Orders::new(Some("pw"), true), &sealed, Ok(order)),
            (
                Orders::new(Some("pw"), true),
                &forged,
                Err("does not match"),
            ),
            (Orders::new(None, false), order, Ok(order)),
            (Orders::new(Some(""), true), order, Ok(order)),
            (Orders::new(Some("pw"), false), &stale, Err("a replay")),
            (Orders::new(Some("pw"), false), &timeless, Err("no time")),
        ];
        for (i, (orders, payload, want)) in cases.into_iter().enumerate() {
            match (orders.open(topic, payload, now), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got[..], want, "case {i}"),
                (Err(e), Err(needle)) => assert!(e.contains(needle), "case {i}: {e}"),
                (got, want) => panic!("case {i}: {got:?} instead of {want:?}"),
            }
        }
    }
}
