//! Orders to a worker (assignments, cancels, output notices) are sealed
//! with its password when it has a login: the broker's rules may let others
//! write to its topics, so that is how the worker knows they are ours.

use std::sync::Arc;

use transcode_common::topics::{Topic, Topics};

use crate::logins::Logins;

/// What seals the orders to workers.
#[derive(Clone)]
pub struct Orders {
    pub topics: Topics,
    /// The workers' passwords, when they have logins.
    pub logins: Option<Arc<Logins>>,
}

impl Orders {
    /// The payload to publish on `topic`: an order to a worker with a login
    /// gets `sealed_at` and its seal; anything else goes as it is.
    pub fn seal(&self, topic: &str, payload: Vec<u8>) -> Vec<u8> {
        let Some(logins) = &self.logins else {
            return payload;
        };
        let worker = match self.topics.parse(topic) {
            Some(Topic::WorkerJobs(id) | Topic::WorkerCancel(id) | Topic::WorkerOutputs(id)) => id,
            _ => return payload,
        };
        match logins.password_of(&worker) {
            Some(key) => {
                // The time goes inside the seal: a recorded order replayed
                // later is refused as stale.
                let stamped = match serde_json::from_slice::<serde_json::Value>(&payload) {
                    Ok(serde_json::Value::Object(mut order)) => {
                        order.insert(
                            transcode_common::seal::SEALED_AT.into(),
                            transcode_common::unix_ms().into(),
                        );
                        serde_json::to_vec(&order).unwrap_or(payload)
                    }
                    _ => payload,
                };
                transcode_common::seal::seal(&stamped, key.as_bytes(), topic)
            }
            None => payload,
        }
    }
}
