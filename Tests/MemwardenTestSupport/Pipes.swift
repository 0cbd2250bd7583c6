import CMemwarden

#if canImport(Glibc)
import Glibc
#endif

/// A pipe whose ends are close-on-exec from the start: [read, write]. A
/// test that reads to the end of file must hold the only write end: a child
/// another test spawns meanwhile (the agent, leaksim, an API server) would
/// inherit a plain pipe()'s and keep the reader waiting while it lives.
public func closeOnExecPipe() -> [Int32]? {
    var fds: [Int32] = [0, 0]
    return mw_pipe_cloexec(&fds) == 0 ? fds : nil
}
