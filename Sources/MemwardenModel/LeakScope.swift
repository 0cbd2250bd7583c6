/// Where a verdict applies: one process, or one memory cgroup's aggregate.
public enum LeakScope: String, Sendable, Hashable {
    case process
    case cgroup
}
