import Glibc

enum Clock {
    /// CLOCK_MONOTONIC in nanoseconds: immune to wall-clock steps, like the agent's own clock.
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    static func seconds(since start: UInt64) -> Double {
        Double(now() - start) / 1e9
    }
}

/// Scenarios stop on SIGTERM, SIGINT or SIGHUP, and must clean up first (the file cache file, the
/// children). The signals are blocked and collected with sigtimedwait, which doubles as the tick
/// sleep: a stop request ends the wait at once, and the cleanup runs in ordinary code instead of a
/// signal handler with global state. Forked children inherit the mask, so they wait the same way.
enum StopSignals {
    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signal) }
        return set
    }

    static func block() {
        var set = set
        sigprocmask(SIG_BLOCK, &set, nil)
    }

    /// Sleeps until the monotonic `deadline`; returns the stop signal if one arrived first.
    static func wait(until deadline: UInt64) -> Int32? {
        var set = set
        while true {
            let now = Clock.now()
            let remaining = deadline > now ? deadline - now : 0
            var timeout = timespec(tv_sec: Int(remaining / 1_000_000_000), tv_nsec: Int(remaining % 1_000_000_000))
            let signal = sigtimedwait(&set, nil, &timeout)
            if signal > 0 { return signal }
            if errno == EINTR { continue }  // some other signal (e.g. SIGCHLD with a handler); keep waiting
            return nil  // EAGAIN: the deadline passed
        }
    }
}
