//! What a command can fail with, and the exit code each failure means.

/// A failed command. Each variant has its own exit code (see `--help`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No answer from the service: not running, wrong URL, or too slow.
    #[error("{0}")]
    Unreachable(String),
    /// The service answered with an error status.
    #[error("{0}")]
    Service(String),
    /// The service's rate limit refused the call; it may be retried after the wait.
    #[error("{message}")]
    RateLimited {
        /// What the service said, with the hint.
        message: String,
        /// The service's `Retry-After`, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// The command ran but its result is a failure: an event was rejected,
    /// a signature did not verify, a check did not pass.
    #[error("{0}")]
    Failed(String),
    /// The command line is valid for clap but not usable (a bad value, a missing secret).
    #[error("{0}")]
    Usage(String),
    /// Anything else (I/O, the store).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// 0 success, 1 the service or the check said no, 2 usage, 3 unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable(_) => 3,
            CliError::Usage(_) => 2,
            CliError::Service(_)
            | CliError::RateLimited { .. }
            | CliError::Failed(_)
            | CliError::Other(_) => 1,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.into())
    }
}
