//! The crate's error type: one enum, each variant names where it came from.
//!
//! # Layout
//! - [`Error`]: everything that can go wrong in a loadtest command.

use std::path::PathBuf;

/// Everything that can go wrong in a loadtest command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file could not be read or is invalid.
    #[error("scenario {name}: {problem}")]
    Scenario {
        /// The scenario name or file.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A results file is not valid JSON of the expected schema.
    #[error("results {path}: {source}")]
    Results {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The target URL is not usable.
    #[error("target {0}")]
    Target(String),
    /// Talking to the target failed outside the measured traffic (seeding, admin actions).
    #[error("admin call {what} failed: {problem}")]
    Admin {
        /// The call.
        what: String,
        /// What went wrong.
        problem: String,
    },
    /// Drawing a chart failed.
    #[error("chart {chart}: {problem}")]
    Chart {
        /// The chart.
        chart: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// The in-process gateway could not be started.
    #[error("embedded gateway: {0}")]
    Embedded(String),
    /// The bureau simulator's options or a change to them are invalid, or it could not start.
    #[error("bureau simulator: {0}")]
    Bureau(String),
    /// Serialising results or a histogram failed.
    #[error("serialise: {0}")]
    Serialise(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn scenario(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Scenario {
            name: name.into(),
            problem: problem.into(),
        }
    }
}
