//! Secrets the orchestrator makes for itself in `state.dir`: random bytes
//! as hex in a file only its owner can read, made at first start and kept
//! across restarts (the source signing key, the API token).

use std::path::{Path, PathBuf};

/// A secret file in `state_dir`: its bytes, made when there is none.
/// `what` names it in errors ("the API token").
pub fn load_or_make(
    state_dir: &Path,
    name: &str,
    len: usize,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let path = state_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => unhex(text.trim()).filter(|b| b.len() == len).ok_or_else(|| {
            anyhow::anyhow!(
                "{what} {} is damaged (it must be {} hex digits); delete it and a new one is made at the next start",
                path.display(),
                len * 2
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make(state_dir, name, len, what)?;
            tracing::info!(path = %path.display(), "made {what}");
            Ok(bytes)
        }
        Err(e) => anyhow::bail!("cannot read {what} {}: {e}", path.display()),
    }
}

/// Writes a new random secret over `state_dir/name` and returns it with
/// the file's path.
pub fn replace(
    state_dir: &Path,
    name: &str,
    len: usize,
    what: &str,
) -> anyhow::Result<(Vec<u8>, PathBuf)> {
    let bytes = make(state_dir, name, len, what)?;
    Ok((bytes, state_dir.join(name)))
}

fn make(state_dir: &Path, name: &str, len: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let path = state_dir.join(name);
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random numbers for {what}: {e}"))?;
    std::fs::create_dir_all(state_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the state folder {}: {e}",
            state_dir.display()
        )
    })?;
    write_private(&path, &hex(&bytes))
        .map_err(|e| anyhow::anyhow!("cannot write {what} {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Writes a file only its owner can read, whole or not at all.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    transcode_common::files::write_private(path, text.as_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares two byte strings in a time that depends only on their lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_kept_across_restarts_private_and_replaceable() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = load_or_make(&state, "key", 32, "the key").unwrap();
        let b = load_or_make(&state, "key", 32, "the key").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join("key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (c, path) = replace(&state, "key", 32, "the key").unwrap();
        assert_ne!(a, c);
        assert_eq!(load_or_make(&state, "key", 32, "the key").unwrap(), c);
        std::fs::write(&path, "not hex").unwrap();
        let err = load_or_make(&state, "key", 32, "the key")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the key") && err.contains("damaged") && err.contains("delete it"),
            "{err}"
        );
    }

    #[test]
    fn comparisons() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
