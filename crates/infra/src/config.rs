//! Configuration loading: one typed tree per service, from one TOML file plus environment
//! overrides.
//!
//! One file (`config/default.toml` is the reference) holds the shared sections (`kafka`, `s3`,
//! `retry`, `metrics`, `shutdown`) and one or more sections per service. A service's config type
//! implements [`ServiceConfig`], naming the top-level sections it reads; [`load`] gives it those,
//! ignores the other services' sections ([`ALL_SECTIONS`]) and refuses a section nobody knows.
//! Inside the sections it reads, unknown keys are errors (`deny_unknown_fields` on every struct):
//! a typo in production config fails at start instead of being silently ignored.
//!
//! Environment variables named `AUTOTAG__SECTION__KEY` override the file (double underscores
//! separate levels: `AUTOTAG__KAFKA__BROKERS=host:9092`,
//! `AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS=2000`). An override value is parsed as a TOML
//! literal when it is one (`42`, `true`, `["a","b"]`) and taken as a plain string otherwise.
//!
//! Times are written in milliseconds (keys ending in `_ms`, which is what operators' overrides
//! use) and become [`Duration`](std::time::Duration)s here, at the boundary, through [`millis`]; no code downstream
//! converts units.
//!
//! S3 credentials, region and endpoint deliberately do *not* live here: they come from the
//! standard AWS environment (see [`crate::s3`]).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(test)]
use std::time::Duration;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "AUTOTAG__";

/// Every top-level section of the config file, of every service. A section outside this list is
/// a typo and refused; one inside it that a service does not read is ignored by that service.
pub const ALL_SECTIONS: &[&str] = &[
    // Shared.
    "kafka", "s3", "retry", "metrics", "shutdown", // The worker.
    "model", "frames", "batch", "pipeline", "lanes", "limits",   // The feedback API.
    "feedback", // The relabel job.
    "relabel",  // The backfill command.
    "backfill",
];

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("unknown config section [{0}] (known: {known})", known = ALL_SECTIONS.join(", "))]
    UnknownSection(String),
    #[error("invalid config value: {0}")]
    Invalid(String),
}

/// The `--config FILE` flag every binary takes (also `AUTOTAG_CONFIG`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// AUTOTAG__SECTION__KEY.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// [`load`] from the flag's file (or defaults and the environment alone).
    ///
    /// # Errors
    /// As [`load`].
    pub fn load<T: ServiceConfig>(&self) -> Result<T, ConfigError> {
        load(self.config.as_deref())
    }
}

/// A service's configuration tree.
pub trait ServiceConfig: DeserializeOwned + Serialize + Default {
    /// The top-level sections this service reads (each must be in [`ALL_SECTIONS`]).
    const SECTIONS: &'static [&'static str];

    /// Checks that span several keys, run after parsing.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the offending key.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Load `path` (if given) and apply `AUTOTAG__…` overrides from the process environment.
///
/// # Errors
/// An unreadable file, invalid TOML, an unknown section or key, a value of the wrong type, or a
/// failed [`ServiceConfig::validate`].
pub fn load<T: ServiceConfig>(path: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// As [`load`] with an explicit environment (testable).
///
/// # Errors
/// As [`load`].
pub fn load_with_env<T: ServiceConfig>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut root = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
            text.parse::<toml::Table>().map_err(|e| ConfigError::Parse(e.to_string()))?
        }
        None => toml::Table::new(),
    };
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (var, value) in vars {
        apply_override(&mut root, &var, &value)?;
    }
    let mut own = toml::Table::new();
    for (section, value) in root {
        if T::SECTIONS.contains(&section.as_str()) {
            own.insert(section, value);
        } else if !ALL_SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownSection(section));
        }
    }
    let cfg: T = toml::Value::Table(own).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

/// `cfg` as a TOML table (what `autotag config` prints, merged over every service).
///
/// # Errors
/// Only if `T` cannot be represented in TOML (a bug).
pub fn to_table<T: Serialize>(cfg: &T) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(cfg).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// Apply one `AUTOTAG__A__B__C=value` override to the TOML tree.
fn apply_override(root: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env { var: var.to_owned(), message };
    let path: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(err("empty path segment".into()));
    }
    let (last, parents) = path.split_last().ok_or_else(|| err("no key".into()))?;
    let mut table = root;
    for p in parents {
        let entry = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| err(format!("`{p}` is not a section")))?;
    }
    // librdkafka pass-through maps hold strings; everything else gets a typed literal.
    let passthrough = matches!(parents.last().map(String::as_str), Some("consumer" | "producer"));
    let parsed = if passthrough { toml::Value::String(value.to_owned()) } else { parse_literal(value) };
    table.insert(last.clone(), parsed);
    Ok(())
}

/// `42` → integer, `true` → bool, `["a"]` → array, anything else → string.
fn parse_literal(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

/// Serde adapter: a [`Duration`](std::time::Duration) written as whole milliseconds (`#[serde(with = "millis")]` on a
/// field renamed to its `_ms` key).
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes whole milliseconds.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads a non-negative integer of milliseconds.
    ///
    /// # Errors
    /// A value that is not a non-negative integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Svc {
        kafka: Kafka,
        batch: Batch,
    }
    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Kafka {
        brokers: String,
    }
    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Batch {
        max_batch: usize,
        #[serde(rename = "max_delay_ms", with = "millis")]
        max_delay: Duration,
    }
    impl ServiceConfig for Svc {
        const SECTIONS: &'static [&'static str] = &["kafka", "batch"];
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sections_of_other_services_are_ignored_unknown_ones_refused() {
        let dir = std::env::temp_dir().join(format!("autotag-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[kafka]\nbrokers = \"b:1\"\n[model]\nwhatever = 1\n").unwrap();
        let cfg: Svc = load_with_env(Some(&file), env(&[])).expect("another service's section is ignored");
        assert_eq!(cfg.kafka.brokers, "b:1");
        std::fs::write(&file, "[kafak]\nbrokers = \"b:1\"\n").unwrap();
        let e = load_with_env::<Svc>(Some(&file), env(&[])).expect_err("a typo in a section name");
        assert!(e.to_string().contains("kafak"), "{e}");
        // An override of another service's section is ignored too; of an unknown one refused.
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__MODEL__DIR", "x")])).is_ok());
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__MODLE__DIR", "x")])).is_err());
        // Unknown keys inside a section this service reads are errors.
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__KAFKA__BROKER", "x")])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_become_durations_at_the_boundary_and_print_as_ms() {
        let cfg: Svc = load_with_env(None, env(&[("AUTOTAG__BATCH__MAX_DELAY_MS", "25")])).unwrap();
        assert_eq!(cfg.batch.max_delay, Duration::from_millis(25));
        let t = to_table(&cfg).unwrap();
        assert_eq!(t["batch"]["max_delay_ms"].as_integer(), Some(25));
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__BATCH__MAX_DELAY_MS", "-1")])).is_err());
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__BATCH__MAX_DELAY_MS", "soon")])).is_err());
    }

    #[test]
    fn overrides_are_typed_literals_or_strings() {
        let cfg: Svc = load_with_env(
            None,
            env(&[("AUTOTAG__BATCH__MAX_BATCH", "7"), ("AUTOTAG__KAFKA__BROKERS", "10.0.0.1:9092"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(cfg.batch.max_batch, 7);
        assert_eq!(cfg.kafka.brokers, "10.0.0.1:9092");
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__BATCH__MAX_BATCH", "lots")])).is_err());
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__KAFKA__BROKERS__X", "1")])).is_err());
        assert!(load_with_env::<Svc>(None, env(&[("AUTOTAG__KAFKA____X", "1")])).is_err());
    }
}
