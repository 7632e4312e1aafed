//! Node configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a node's event loop behaves. [`NodeConfig::default`] gives Mir's defaults.
///
/// The bound on injected events buffered in a node (queued, or waiting in the injection
/// channel; see [the back-pressure rules](crate#back-pressure)) is
/// `pause_threshold + (inject_capacity + 1) × max_batch_size`, plus what passive modules emit in
/// response to events already buffered.
///
/// ```
/// use mir_runtime::NodeConfig;
/// let cfg = NodeConfig { max_batch_size: 64, ..NodeConfig::default() };
/// assert!(cfg.validate().is_ok());
/// let bad = NodeConfig { resume_threshold: 10, pause_threshold: 5, ..NodeConfig::default() };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The most events handed to a module in one call. Must be > 0. Default 512.
    pub max_batch_size: usize,
    /// When more events than this are buffered in the node, it stops taking input from outside
    /// (injected events, active modules' sinks) and stops firing alarms. Must be > 0. Default 8192.
    pub pause_threshold: usize,
    /// Input resumes when the number of buffered events falls to this or below. Must be ≤
    /// `pause_threshold`. Default 6144.
    pub resume_threshold: usize,
    /// How many injected batches (each at most `max_batch_size` events) may wait to enter the node.
    /// Must be > 0. Default 16.
    pub inject_capacity: usize,
    /// If set, the node logs its statistics through `tracing` at INFO level this often.
    #[serde(with = "opt_millis")]
    pub stats_period: Option<Duration>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_batch_size: 512,
            pause_threshold: 8192,
            resume_threshold: 6144,
            inject_capacity: 16,
            stats_period: None,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_batch_size` is 0.
    #[error(
        "max_batch_size must be at least 1 (it is the most events a module gets per call); got 0"
    )]
    ZeroBatchSize,
    /// `pause_threshold` is 0.
    #[error("pause_threshold must be at least 1; got 0")]
    ZeroPauseThreshold,
    /// `resume_threshold` > `pause_threshold`.
    #[error("resume_threshold ({resume}) must not exceed pause_threshold ({pause}): input would never pause long enough to resume")]
    ResumeAbovePause {
        /// The configured pause threshold.
        pause: usize,
        /// The configured resume threshold.
        resume: usize,
    },
    /// `inject_capacity` is 0.
    #[error("inject_capacity must be at least 1; got 0")]
    ZeroInjectCapacity,
    /// `stats_period` is zero.
    #[error("stats_period must be longer than zero (leave it unset to turn periodic stats off)")]
    ZeroStatsPeriod,
}

impl NodeConfig {
    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        if self.pause_threshold == 0 {
            return Err(ConfigError::ZeroPauseThreshold);
        }
        if self.resume_threshold > self.pause_threshold {
            return Err(ConfigError::ResumeAbovePause {
                pause: self.pause_threshold,
                resume: self.resume_threshold,
            });
        }
        if self.inject_capacity == 0 {
            return Err(ConfigError::ZeroInjectCapacity);
        }
        if self.stats_period == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroStatsPeriod);
        }
        Ok(())
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Mir's TestNode_Config cases, plus ours.
    #[test]
    fn validation() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        let c = NodeConfig { max_batch_size: 0, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroBatchSize));
        let c = NodeConfig { pause_threshold: 5, resume_threshold: 10, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ResumeAbovePause { pause: 5, resume: 10 }));
        let c = NodeConfig { pause_threshold: 0, resume_threshold: 0, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroPauseThreshold));
        let c = NodeConfig { inject_capacity: 0, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroInjectCapacity));
        let c = NodeConfig { stats_period: Some(Duration::ZERO), ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroStatsPeriod));
        let c = NodeConfig { pause_threshold: 7, resume_threshold: 7, ..Default::default() };
        assert_eq!(c.validate(), Ok(()));
        assert!(ConfigError::ResumeAbovePause { pause: 5, resume: 10 }
            .to_string()
            .contains("resume_threshold (10)"));
    }
}
