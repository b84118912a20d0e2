use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::JobState;

/// How a job ended: the `result` argument of `JobRemoved`.
///
/// These are the final [`JobState`]s, and nothing else: a job that is still queued or
/// running has no result, which the type makes impossible to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(rename_all = "lowercase")]
#[zbus(signature = "s")]
pub enum JobResult {
    /// It did its work.
    Done,
    /// It stopped on an error (the job's `Error` says which).
    Failed,
    /// It was canceled before it finished.
    Canceled,
}

impl JobResult {
    /// Every result, in the order of the contract.
    pub const ALL: [JobResult; 3] = [Self::Done, Self::Failed, Self::Canceled];

    /// The spelling on the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no job result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job result {0:?} (expected one of: done, failed, canceled)")]
pub struct UnknownJobResult(pub String);

impl FromStr for JobResult {
    type Err = UnknownJobResult;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|result| result.as_str() == s).ok_or_else(|| UnknownJobResult(s.to_owned()))
    }
}

impl From<JobResult> for JobState {
    fn from(result: JobResult) -> Self {
        match result {
            JobResult::Done => Self::Done,
            JobResult::Failed => Self::Failed,
            JobResult::Canceled => Self::Canceled,
        }
    }
}

/// A job state that is not final, so it is no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {0} job has not ended, so it has no result")]
pub struct NotFinal(pub JobState);

impl TryFrom<JobState> for JobResult {
    type Error = NotFinal;

    fn try_from(state: JobState) -> Result<Self, Self::Error> {
        match state {
            JobState::Done => Ok(Self::Done),
            JobState::Failed => Ok(Self::Failed),
            JobState::Canceled => Ok(Self::Canceled),
            JobState::Queued | JobState::Running => Err(NotFinal(state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_result_and_refuses_other_spellings() {
        for result in JobResult::ALL {
            assert_eq!(result.as_str().parse::<JobResult>(), Ok(result));
            assert_eq!(result.to_string(), result.as_str());
        }
        for bad in ["", "Done", "cancelled", "running"] {
            assert_eq!(bad.parse::<JobResult>(), Err(UnknownJobResult(bad.to_owned())));
        }
    }

    #[test]
    fn the_results_are_exactly_the_final_states_spelled_alike() {
        for state in JobState::ALL {
            match JobResult::try_from(state) {
                Ok(result) => {
                    assert!(state.is_final(), "{state}");
                    assert_eq!((result.as_str(), JobState::from(result)), (state.as_str(), state));
                }
                Err(NotFinal(refused)) => assert!(!refused.is_final(), "{state}"),
            }
        }
    }
}
