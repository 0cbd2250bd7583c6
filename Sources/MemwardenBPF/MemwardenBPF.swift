// This module holds the BPF objects that BPFObjectPlugin compiles from ebpf/ and
// embeds, and their skeletons (`MemwardenSkeleton`, `BenchEmptySkeleton` in the
// generated source): the names and types below are what the skeletons are made of.

/// A BPF object embedded in the binary as base64 ELF.
public struct BPFEmbeddedObject: Sendable {
    public let name: String
    public let base64: StaticString

    public init(name: String, base64: StaticString) {
        self.name = name
        self.base64 = base64
    }
}

/// A map the object defines (SEC(".maps")).
public struct BPFMapName: Sendable, Hashable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    public var description: String { name }
}

/// A program the object defines, with the section that says where it attaches.
public struct BPFProgramName: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let section: String

    public init(_ name: String, section: String) {
        self.name = name
        self.section = section
    }

    public var description: String { name }
}

/// A global the loader sets before load (a `const volatile` setting in
/// .rodata), typed by its C type: the generator maps __u64 to UInt64 and a
/// named struct to the struct Swift imports from CMemwarden.
public struct BPFSetting<Value>: Sendable {
    public let name: String
    public let section: String
    /// Its size in the object: the loader checks it against Value's.
    public let size: Int

    public init(_ name: String, section: String, size: Int) {
        self.name = name
        self.section = section
        self.size = size
    }

    /// Value is as large as the variable: the C header and the object agree.
    public var matchesValueSize: Bool { MemoryLayout<Value>.size == size }
}
