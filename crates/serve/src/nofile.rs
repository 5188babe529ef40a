//! The process's descriptor limit (RLIMIT_NOFILE), raised at start-up from
//! the soft limit (often 1,024) to the hard one, which is what the soft one
//! exists to be raised to: a daemon with hundreds of requests in flight and
//! listeners open to clients needs the room.

/// The limit after raising it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// What the process may open now.
    pub soft: u64,
    pub hard: u64,
}

/// Where the soft limit stops when the hard one is unlimited: Linux refuses
/// more than `fs.nr_open` (1,048,576 by default) anyway.
const UNLIMITED_CAP: u64 = 1 << 20;

/// Raises the soft limit to the hard one; returns the limits in force. If
/// raising is refused, the soft limit stays and is returned.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hard = lim.rlim_max;
    let target = if hard == libc::RLIM_INFINITY {
        UNLIMITED_CAP as libc::rlim_t
    } else {
        hard
    };
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    let as_u64 = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v
        }
    };
    Ok(NofileLimit {
        soft: as_u64(lim.rlim_cur),
        hard: as_u64(hard),
    })
}
