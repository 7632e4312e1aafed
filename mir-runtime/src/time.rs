//! Time as modules see it.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, measured from the start of the executor that runs the node.
///
/// In the production executor it follows the monotonic clock; in the simulator it is simulated
/// time, advanced by the simulator only. Modules get it from their context and never read a clock
/// themselves.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Time(Duration);

impl Time {
    /// The executor's start.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `d` after the start.
    pub const fn from_duration(d: Duration) -> Time {
        Time(d)
    }

    /// The time elapsed since the start.
    pub const fn since_start(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0 + d)
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, t: Time) -> Duration {
        self.0 - t.0
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}
