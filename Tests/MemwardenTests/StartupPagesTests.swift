import Testing

import MemwardenAgent

struct StartupPagesTests {
    /// Dropping this test process's own executable pages must leave it working: the
    /// read-only mappings come back from the file, and the RELRO segment (written by
    /// the loader's relocations, so anonymous) is left alone.
    @Test func releasesTheExecutablesPagesAndTheProcessRunsOn() {
        let released = StartupPages.release()
        #expect(released > 0)
        // code, type metadata, protocol conformances and relocated pointers all in use again
        let values: [any CustomStringConvertible] = [1, "two", 3.5, [4]]
        #expect(values.map(\.description) == ["1", "two", "3.5", "[4]"])
        #expect(StartupPages.release() > 0)
    }
}
