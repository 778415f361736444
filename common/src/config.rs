//! Loading a binary's configuration: built-in defaults, then `--config FILE`
//! (TOML), then environment variables `TRANSCODE_SECTION__KEY=value`.
//!
//! Each binary defines its own settings struct (serde, with `Default`); this
//! module merges the layers, refuses keys that do not exist, and reports
//! every problem as a sentence that names the key.

use std::collections::HashMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The prefix of every environment override.
pub const ENV_PREFIX: &str = "TRANSCODE";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unknown config key `{key}` (from {origin}); known keys: {known}")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration: {0}")]
    Other(String),
}

impl ConfigError {
    /// A value that parsed but makes no sense.
    pub fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Settings that can check their own values after loading.
pub trait Validate {
    fn validate(&mut self) -> Result<(), ConfigError>;
}

/// Loads `T` from its defaults, the optional file and the process
/// environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    load_with_env(file, None)
}

/// Like [`load`], with the environment given explicitly (`None`: the
/// process environment). Tests use this.
pub fn load_with_env<T>(
    file: Option<&Path>,
    env: Option<HashMap<String, String>>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let defaults = T::default();
    let known = leaf_keys(&serde_json::to_value(&defaults).map_err(other)?);

    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let parsed: serde_json::Value = Config::builder()
            .add_source(File::from_str(&text, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        check_known(&parsed, &known, &format!("config file {}", path.display()))?;
    }

    let env_source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(env.clone());
    let env_only: serde_json::Value = Config::builder()
        .add_source(env_source.clone())
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Other(e.to_string()))?;
    check_known(&env_only, &known, "the environment (TRANSCODE_...)")?;

    let mut builder = Config::builder().add_source(Config::try_from(&defaults).map_err(other)?);
    if let Some(path) = file {
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    let mut settings: T = builder
        .add_source(env_source)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(from_config_error)?;
    settings.validate()?;
    Ok(settings)
}

fn other(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Other(e.to_string())
}

fn from_config_error(e: config::ConfigError) -> ConfigError {
    match e {
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => ConfigError::invalid(&key, format!("expected {expected}, found {unexpected}")),
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => ConfigError::invalid(&key, error.to_string()),
        other => ConfigError::Other(other.to_string()),
    }
}

/// Every leaf of a value tree with its dotted name (`http.listen`, ...);
/// an empty table counts as a leaf.
pub fn leaves(value: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => out.push((prefix.to_string(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// Dotted names of every leaf of a value tree.
fn leaf_keys(value: &serde_json::Value) -> Vec<String> {
    leaves(value).into_iter().map(|(k, _)| k).collect()
}

fn check_known(
    given: &serde_json::Value,
    known: &[String],
    origin: &str,
) -> Result<(), ConfigError> {
    for key in leaf_keys(given) {
        if key.is_empty() {
            continue;
        }
        let ok = known
            .iter()
            .any(|k| *k == key || key.starts_with(&format!("{k}.")));
        if !ok {
            return Err(ConfigError::UnknownKey {
                key,
                origin: origin.to_string(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Demo {
        name: String,
        http: Http,
        password: Option<String>,
        list: Vec<String>,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Http {
        listen: String,
        port: u16,
        enabled: bool,
    }
    impl Default for Demo {
        fn default() -> Self {
            Demo {
                name: "demo".into(),
                http: Http::default(),
                password: None,
                list: vec![],
            }
        }
    }
    impl Default for Http {
        fn default() -> Self {
            Http {
                listen: "0.0.0.0:8000".into(),
                port: 8000,
                enabled: true,
            }
        }
    }
    impl Validate for Demo {
        fn validate(&mut self) -> Result<(), ConfigError> {
            if self.http.port == 1 {
                return Err(ConfigError::invalid("http.port", "port 1 is reserved"));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_file_env_layers() {
        let f = file("name = \"from-file\"\n[http]\nport = 9000\n");
        let got: Demo = load_with_env(
            Some(f.path()),
            env(&[("TRANSCODE_HTTP__LISTEN", "127.0.0.1:8001"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(got.name, "from-file");
        assert_eq!(got.http.port, 9000);
        assert_eq!(got.http.listen, "127.0.0.1:8001");
        assert!(got.http.enabled);

        let got: Demo = load_with_env(None, env(&[("TRANSCODE_PASSWORD", "1234")])).unwrap();
        assert_eq!(got.password.as_deref(), Some("1234"));
        assert_eq!(got.name, "demo");
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: Vec<Case> = vec![
            (Some("[http]\nport = \"many\"\n"), &[], "http.port"),
            (Some("[http]\nlisten_typo = 1\n"), &[], "http.listen_typo"),
            (Some("nmae = \"x\"\n"), &[], "nmae"),
            (Some("this is not toml"), &[], "config file"),
            (None, &[("TRANSCODE_HTTP__PORT", "70000")], "http.port"),
            (
                None,
                &[("TRANSCODE_HTTP__ENABLED", "maybe")],
                "http.enabled",
            ),
            (None, &[("TRANSCODE_HTTP__LISTN", "x")], "http.listn"),
            (None, &[("TRANSCODE_HTTP__PORT", "1")], "http.port"),
        ];
        for (text, vars, needle) in cases {
            let f = text.map(file);
            let err =
                load_with_env::<Demo>(f.as_ref().map(|f| f.path()), env(vars)).expect_err(needle);
            assert!(err.to_string().contains(needle), "{text:?} {vars:?}: {err}");
        }
        let err = load_with_env::<Demo>(Some(Path::new("/nonexistent/x.toml")), env(&[]))
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }
}
