//! What the orchestrator publishes besides assignments: stop orders on a
//! worker's cancel topic and its own counters.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stop order on `workers/{id}/cancel` (a bare `CANCEL` there stops every
/// run). `fenced`: the job moved to another worker, so stop without a
/// status, which would contradict the new holder's; `attempt` then names
/// the stale run, and a newer run of the job on this worker stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub job_id: Uuid,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// The orchestrator's retained counters on `orchestrator/stats` (read by
/// Home Assistant's orchestrator device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestratorStats {
    pub queued_jobs: usize,
    pub running_jobs: usize,
    pub workers_online: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn stop_orders_read_and_write() {
        let id = "0b4f3e5e-8a0c-4f5b-9d7e-1c2b3a4d5e6f";
        let cases = [
            (
                format!(r#"{{"job_id":"{id}"}}"#),
                Some((false, None)),
                format!(r#"{{"job_id":"{id}"}}"#),
            ),
            (
                format!(r#"{{"job_id":"{id}","fenced":true,"attempt":3}}"#),
                Some((true, Some(3))),
                format!(r#"{{"job_id":"{id}","fenced":true,"attempt":3}}"#),
            ),
            // A sealed order carries more fields; they are not ours to read.
            (
                format!(r#"{{"job_id":"{id}","fenced":true,"sealed_at":1,"sig":"x"}}"#),
                Some((true, None)),
                format!(r#"{{"job_id":"{id}","fenced":true}}"#),
            ),
            (
                r#"{"job_id":"not a uuid"}"#.to_string(),
                None,
                String::new(),
            ),
            (
                format!(r#"{{"job_id":"{id}","attempt":"two"}}"#),
                None,
                String::new(),
            ),
        ];
        for (payload, want, written) in cases {
            let got = wire::decode::<CancelOrder>(payload.as_bytes()).ok();
            assert_eq!(
                got.as_ref().map(|o| (o.fenced, o.attempt)),
                want,
                "{payload}"
            );
            if let Some(order) = got {
                assert_eq!(String::from_utf8(wire::encode(&order)).unwrap(), written);
            }
        }
    }
}
