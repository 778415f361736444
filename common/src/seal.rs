//! Payloads sealed with a secret two parties share (a worker's login): the
//! JSON object as it was, with `"sig"` added last, the HMAC-SHA256 of the
//! topic and the object's bytes. The broker has no access rules, so a seal
//! is how a worker knows an order comes from the orchestrator, whatever
//! client published it. Still readable with `mosquitto_sub`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The field (unix ms) the orchestrator puts inside a sealed order: an
/// order sealed longer ago than [`MAX_AGE_MS`] (or that far in the future:
/// clocks differ) is refused, so a recorded order cannot be replayed later.
pub const SEALED_AT: &str = "sealed_at";
/// How old (or how far ahead) a sealed order may be.
pub const MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// Why a payload is not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SealError {
    #[error("it carries no signature")]
    Unsigned,
    #[error("its signature does not match (not from the orchestrator, or for another topic)")]
    Forged,
}

fn mac(key: &[u8], topic: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(topic.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `payload` (a JSON object) with its signature for `topic`. Anything
/// that is not an object is returned as it is.
pub fn seal(payload: &[u8], key: &[u8], topic: &str) -> Vec<u8> {
    let body = payload.trim_ascii();
    let Some(open) = body.strip_suffix(b"}").filter(|_| body.starts_with(b"{")) else {
        return payload.to_vec();
    };
    let sig = hex(&mac(key, topic, body).finalize().into_bytes());
    let mut out = open.to_vec();
    if open.trim_ascii() != b"{" {
        out.push(b',');
    }
    out.extend_from_slice(format!("\"sig\":\"{sig}\"}}").as_bytes());
    out
}

/// The payload as it was sealed, when its signature for `topic` is right.
pub fn open(payload: &[u8], key: &[u8], topic: &str) -> Result<Vec<u8>, SealError> {
    let body = payload.trim_ascii();
    // `"sig":"<64 hex>"}` ends a sealed payload.
    const TAIL: usize = "\"sig\":\"\"}".len() + 64;
    if body.len() < TAIL + 1 || !body.ends_with(b"\"}") {
        return Err(SealError::Unsigned);
    }
    let (head, tail) = body.split_at(body.len() - TAIL);
    let Some(hex_sig) = tail
        .strip_prefix(b"\"sig\":\"")
        .and_then(|t| t.strip_suffix(b"\"}"))
    else {
        return Err(SealError::Unsigned);
    };
    let sig: Option<Vec<u8>> = hex_sig
        .chunks(2)
        .map(|c| {
            std::str::from_utf8(c)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect();
    let sig = sig.ok_or(SealError::Unsigned)?;
    let mut original = match head.strip_suffix(b",") {
        Some(h) => h.to_vec(),
        None if head.trim_ascii() == b"{" => head.to_vec(),
        None => return Err(SealError::Unsigned),
    };
    original.push(b'}');
    mac(key, topic, &original)
        .verify_slice(&sig)
        .map_err(|_| SealError::Forged)?;
    Ok(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_with_its_key_and_topic_only() {
        let key = b"worker password";
        let topic = "transcode/workers/nas/jobs";
        let payload = br#"{"job_id":"x","attempt":2}"#;
        let sealed = seal(payload, key, topic);
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"job_id":"x","attempt":2,"sig":""#),
            "{text}"
        );
        // Still JSON that any reader parses.
        let v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(v["attempt"], 2);
        assert_eq!(open(&sealed, key, topic).unwrap(), payload.to_vec());
        assert_eq!(
            open(&seal(b"{}", key, topic), key, topic).unwrap(),
            b"{}".to_vec()
        );

        let cases: Vec<(Vec<u8>, &[u8], &str, SealError)> = vec![
            (sealed.clone(), b"another key", topic, SealError::Forged),
            (
                sealed.clone(),
                key,
                "transcode/workers/pc/jobs",
                SealError::Forged,
            ),
            (
                text.replace("\"attempt\":2", "\"attempt\":3").into_bytes(),
                key,
                topic,
                SealError::Forged,
            ),
            (payload.to_vec(), key, topic, SealError::Unsigned),
            (b"CANCEL".to_vec(), key, topic, SealError::Unsigned),
            (
                text.replace("\"sig\":\"", "\"sig\":\"zz").into_bytes(),
                key,
                topic,
                SealError::Unsigned,
            ),
        ];
        for (i, (bytes, k, t, want)) in cases.into_iter().enumerate() {
            assert_eq!(open(&bytes, k, t), Err(want), "case {i}");
        }
        assert_eq!(seal(b"CANCEL", key, topic), b"CANCEL".to_vec());
    }
}
