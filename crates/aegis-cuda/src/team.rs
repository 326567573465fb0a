//! The host compute team: the host backend's equivalent of a kernel launch grid.
//!
//! [`host_parallel_for`] runs `f(piece, slot)` for every piece of a job on the calling thread
//! and on whichever of the team's helper threads (`aegis-team-N`, one per core beyond the
//! first, started on first use) are free. The caller *participates*: it claims pieces from
//! the same atomic counter as the helpers, so when no helper shows up (parked, preempted,
//! busy with another stream's job) it simply runs every piece itself, and it only ever waits
//! for pieces a helper has already claimed and is running. A helper that finishes polls for
//! the next job for a short linger window ([`HOST_TEAM_LINGER`]) before it parks, so
//! back-to-back kernels are picked up without a wake-up, and a caller pays for a wake-up
//! syscall only when a helper is actually parked. Work that publishes jobs with serial
//! stretches between them (an inference: pads, small ops, the stream's hand-offs) takes a
//! hold ([`HostTeam::hold`], [`host_team_hold`]) for its span: held helpers keep polling
//! instead of parking, and the hold wakes parked ones at once, so no job of the inference
//! waits for a wake-up (on this VM 30-50 us, which the caller spent running the piece
//! alone). Between inferences the helpers park as before. Why not a work-stealing pool
//! entered from the stream thread: that costs a cross-thread hand-off and two wake-ups per
//! kernel, and a static split stalls on one preempted worker.
//!
//! Several callers (streams) may run jobs at once; helpers take any published job with
//! pieces left. A call made from inside `f` (nesting) cannot deadlock: its caller can always
//! finish alone. A panic in `f`, on any thread, is re-raised on the caller once every helper
//! has left the job.

use crate::raw::team::Team;
use std::time::Duration;

/// How long an idle helper polls for a new job before it parks: longer than the gap between
/// two kernels of one inference (a few microseconds of bookkeeping), short enough that an
/// idle team costs nothing measurable.
pub const HOST_TEAM_LINGER: Duration = Duration::from_micros(100);

/// A team of helper threads that run the pieces of [`HostTeam::parallel_for`] jobs together
/// with the calling thread. The process-wide team behind [`host_parallel_for`] is
/// [`HostTeam::global`]; tests and loom models build their own. Dropping a team stops and
/// joins its helpers.
#[derive(Debug)]
pub struct HostTeam {
    inner: Team,
}

impl HostTeam {
    /// A team with up to `helpers` helper threads (a thread the OS refuses is logged and left
    /// out) that poll for `linger` after each job before parking.
    pub fn new(helpers: usize, linger: Duration) -> Self {
        Self {
            inner: Team::new(helpers, linger),
        }
    }

    /// The process-wide team: one helper per available core beyond the caller's, started on
    /// first use.
    #[cfg(not(loom))]
    pub fn global() -> &'static HostTeam {
        static TEAM: std::sync::OnceLock<HostTeam> = std::sync::OnceLock::new();
        TEAM.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            HostTeam::new(cores.saturating_sub(1), HOST_TEAM_LINGER)
        })
    }

    /// Threads a job can use: the caller plus the helpers that were started.
    pub fn threads(&self) -> usize {
        self.inner.threads()
    }

    /// Keeps the helpers awake (polling for jobs, yielding) until the returned guard is
    /// dropped, and wakes the parked ones now. Taken for the span of work that will publish
    /// jobs with serial stretches between them (an inference), so no job waits for a
    /// helper's wake-up; holds nest. Without one, a helper parks after
    /// [`HOST_TEAM_LINGER`] without a job.
    pub fn hold(&self) -> TeamHold<'_> {
        self.inner.hold();
        TeamHold { team: self }
    }

    /// Helpers parked (asleep until a job or a hold wakes them) at this moment.
    pub fn parked_helpers(&self) -> usize {
        self.inner.parked()
    }

    /// Runs `f(piece, slot)` for every `piece` in `0..pieces` exactly once, on up to
    /// `threads` threads including the caller, and returns when all have finished. `slot` is
    /// below `threads` and unique among the threads working on this call (the caller's is 0),
    /// so `f` can index per-thread scratch with it. `threads <= 1` or `pieces <= 1` runs
    /// inline. A panic in `f` is re-raised here after every helper has left the job.
    pub fn parallel_for(&self, pieces: usize, threads: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        self.inner.parallel_for(pieces, threads, f);
    }
}

/// A hold on a team's helpers ([`HostTeam::hold`]), released when dropped.
#[derive(Debug)]
#[must_use = "the hold ends when this guard is dropped"]
pub struct TeamHold<'t> {
    team: &'t HostTeam,
}

impl Drop for TeamHold<'_> {
    fn drop(&mut self) {
        self.team.inner.release();
    }
}

/// A hold on the process-wide team ([`HostTeam::global`]) for `threads`-thread work:
/// `None` when `threads <= 1` (the team is then neither started nor held) and under
/// `--cfg loom`. The guard is `Send`, so it can be released by the stream that runs the
/// work's last step.
pub fn host_team_hold(threads: usize) -> Option<TeamHold<'static>> {
    #[cfg(not(loom))]
    if threads > 1 {
        let team = HostTeam::global();
        if team.threads() > 1 {
            return Some(team.hold());
        }
    }
    let _ = threads;
    None
}

/// [`HostTeam::parallel_for`] on the process-wide team ([`HostTeam::global`]). Under
/// `--cfg loom` every piece runs on the caller (loom cannot hold threads in a static).
pub fn host_parallel_for(pieces: usize, threads: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    #[cfg(not(loom))]
    if threads > 1 && pieces > 1 {
        HostTeam::global().parallel_for(pieces, threads, f);
        return;
    }
    // One thread, one piece, or a loom build: inline, without touching the team.
    let _ = threads;
    for piece in 0..pieces {
        f(piece, 0);
    }
}

/// Threads [`host_parallel_for`] can use (the caller plus the global team's helpers); 1
/// under `--cfg loom`.
pub fn host_team_threads() -> usize {
    #[cfg(not(loom))]
    return HostTeam::global().threads();
    #[cfg(loom)]
    1
}
