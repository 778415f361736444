//! Which orders a worker takes (assignments, cancels, output notices): the
//! broker has no access rules, so anyone with a login could publish on our
//! topics. The orchestrator seals every order with our login's password
//! (`transcode_common::seal`); an order that is not sealed with it is
//! refused, unless `worker.accept_unsigned_jobs` (a lab without logins).

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

    /// The order as the orchestrator wrote it, or why it is refused.
    pub fn open<'a>(&self, topic: &str, payload: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        let Some(key) = &self.key else {
            return if self.accept_unsigned {
                Ok(Cow::Borrowed(payload))
            } else {
                Err("this worker has no login to check orders with (broker.password), and worker.accept_unsigned_jobs is false".into())
            };
        };
        match seal::open(payload, key, topic) {
            Ok(original) => Ok(Cow::Owned(original)),
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
        let order = br#"{"job_id":"x"}"#;
        let sealed = seal::seal(order, b"pw", topic);
        let forged = seal::seal(order, b"other", topic);
        // (rule, payload) -> the order, or a word of the refusal
        type Case<'a> = (Orders, &'a [u8], Result<&'a [u8], &'a str>);
        let cases: [Case; 8] = [
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
            (Orders::new(None, false), &sealed, Err("no login")),
            (Orders::new(Some(""), true), order, Ok(order)),
        ];
        for (i, (orders, payload, want)) in cases.into_iter().enumerate() {
            match (orders.open(topic, payload), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got[..], want, "case {i}"),
                (Err(e), Err(needle)) => assert!(e.contains(needle), "case {i}: {e}"),
                (got, want) => panic!("case {i}: {got:?} instead of {want:?}"),
            }
        }
    }
}
