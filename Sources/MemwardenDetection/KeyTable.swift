/// A map from 64-bit keys to slot numbers, for the lookups done on every
/// sample (a process by pid, a confirmation target by key). Swift's
/// Dictionary hashes each key through a seeded SipHash, a tenth of the
/// detection time per sample; one multiply is enough for keys that are
/// pids and cgroup ids, never chosen to collide (open addressing, linear
/// probing, at most half full).
struct KeyTable: Sendable {
    private var keys: [UInt64]
    /// The slot of the key at the same index; -1 where none is.
    private var slots: [Int32]
    private var shift: UInt64
    private(set) var count = 0

    init() {
        keys = Array(repeating: 0, count: 64)
        slots = Array(repeating: -1, count: 64)
        shift = 64 - 6
    }

    @inline(__always)
    private func home(_ key: UInt64) -> Int {
        // Fibonacci hashing: the multiply carries every bit of the key into the top ones
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always)
    func find(_ key: UInt64) -> Int32? {
        let mask = slots.count - 1
        var i = home(key)
        while true {
            let slot = slots[i]
            if slot < 0 { return nil }
            if keys[i] == key { return slot }
            i = (i + 1) & mask
        }
    }

    /// Adds `key` (not in the table) with `slot`.
    mutating func insert(_ key: UInt64, _ slot: Int32) {
        if (count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var i = home(key)
        while slots[i] >= 0 { i = (i + 1) & mask }
        keys[i] = key
        slots[i] = slot
        count += 1
    }

    /// Takes `key` out; its slot, or nil when it was not in.
    mutating func remove(_ key: UInt64) -> Int32? {
        let mask = slots.count - 1
        var i = home(key)
        while true {
            let slot = slots[i]
            if slot < 0 { return nil }
            if keys[i] == key { break }
            i = (i + 1) & mask
        }
        let removed = slots[i]
        // backward shift: a later key of the run moves into the hole unless the hole is before its home
        var hole = i
        var j = i
        while true {
            j = (j + 1) & mask
            if slots[j] < 0 { break }
            let h = home(keys[j])
            let reachable = hole <= j ? (h <= hole || h > j) : (h <= hole && h > j)
            if reachable {
                keys[hole] = keys[j]
                slots[hole] = slots[j]
                hole = j
            }
        }
        slots[hole] = -1
        count -= 1
        return removed
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldSlots = slots
        keys = Array(repeating: 0, count: oldSlots.count * 2)
        slots = Array(repeating: -1, count: oldSlots.count * 2)
        shift -= 1
        count = 0
        for i in oldSlots.indices where oldSlots[i] >= 0 { insert(oldKeys[i], oldSlots[i]) }
    }
}
