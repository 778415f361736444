//! What the embedded broker's gate says about a publish it refused, and the
//! one field it reads of a worker's payload to know who speaks.

use serde::{Deserialize, Serialize};

/// Published (not retained) on `{prefix}/refused` in place of a message a
/// client may not send: whoever watches `transcode/#` sees who tried what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The client that sent it (its login's client id).
    pub client_id: String,
    /// Where it wanted the message to go.
    pub topic: String,
    /// Why the broker did not let it through, as a sentence.
    pub reason: String,
    /// The size of the payload that was dropped.
    pub bytes: usize,
    /// Unix ms.
    pub timestamp: u64,
}

/// The `worker_id` a payload speaks for, if it is a JSON object with one:
/// statuses, chunk statuses, heartbeats and segment reports all name their
/// worker. Reads no more than that one field.
pub fn speaker_of(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Speaker {
        worker_id: Option<String>,
    }
    serde_json::from_slice::<Speaker>(payload).ok()?.worker_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_is_the_worker_id_field_of_an_object() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (br#"{"worker_id":"w1","state":"processing"}"#, Some("w1")),
            (
                br#"{"state":"completed","worker_id":"w2","progress":100}"#,
                Some("w2"),
            ),
            (br#"{"state":"completed"}"#, None),
            (br#"{"worker_id":null}"#, None),
            (br#"{"worker_id":7}"#, None),
            (b"online", None),
            (b"", None),
        ];
        for (payload, want) in cases {
            assert_eq!(
                speaker_of(payload).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
