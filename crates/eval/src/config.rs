//! The configuration of `autotag tag` and `autotag eval`: the sections that decide how a GIF
//! is tagged, read exactly as the worker reads them, so a GIF is tagged here as in production:
//! `[model]` (the model, device, precision; the scoring is the model's data), `[frames]` (frames per GIF),
//! `[limits]` (the decoder's limits) and `[s3]` (for `s3://` inputs; credentials, region and
//! endpoint from the standard AWS environment). No section of its own yet.

use autotag_infra::config::{ConfigError, ServiceConfig};
use autotag_infra::s3::S3Config;
use autotag_model::{FramesConfig, ModelConfig};
use gifcodec::DecodeLimits;
use serde::{Deserialize, Serialize};

/// Everything `autotag tag` and `autotag eval` read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub model: ModelConfig,
    pub frames: FramesConfig,
    pub limits: DecodeLimits,
    pub s3: S3Config,
}

impl ServiceConfig for EvalConfig {
    const SECTIONS: &'static [&'static str] = &["model", "frames", "limits", "s3"];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.frames.per_gif == 0 {
            return Err(ConfigError::Invalid("frames.per_gif must be >= 1".into()));
        }
        self.s3.validate().map_err(ConfigError::Invalid)
    }
}
