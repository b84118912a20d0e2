use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life: the `State` property of a job and the state column of
/// `ListJobs`. On the bus it is a string (signature `s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(rename_all = "lowercase")]
#[zbus(signature = "s")]
pub enum JobState {
    /// Admitted, waiting for one of the `max_jobs` places to run.
    Queued,
    /// Doing its work.
    Running,
    /// Finished with success.
    Done,
    /// Finished with an error (see the job's `Error`).
    Failed,
    /// Stopped on request before it finished.
    Canceled,
}

impl JobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobState; 5] = [Self::Queued, Self::Running, Self::Done, Self::Failed, Self::Canceled];

    /// The spelling on the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the job has ended; the three final states are also the `result` of
    /// `JobRemoved`.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Canceled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no job state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?} (expected one of: queued, running, done, failed, canceled)")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownJobState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_state() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
    }

    #[test]
    fn only_the_last_three_are_final() {
        let finals: Vec<JobState> = JobState::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [JobState::Done, JobState::Failed, JobState::Canceled]);
        assert!("Queued".parse::<JobState>().is_err());
    }
}
