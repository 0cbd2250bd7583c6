import Foundation

/// What a compiled BPF object offers its loader: maps, programs and load-time
/// settings, read from its ELF symbol table and its BTF. The skeleton
/// generated from this (see `skeleton(...)`) is what bpftool's `gen skeleton`
/// gives C, in Swift: a name the object lacks fails the build, not the load.
///
/// Hand-written rather than bpftool's: Debian ships bpftool apart from the
/// toolchain, and its skeleton is C with the object's bytes inside, which a
/// SwiftPM build-tool plugin cannot hand to a C target. Only the little of ELF
/// and BTF this needs is read, and anything unexpected stops the build.
struct ObjectLayout {
    struct Program {
        var name: String
        /// The ELF section: the attach point, e.g. "tp/kmem/rss_stat".
        var section: String
    }

    struct Setting {
        var name: String
        var section: String
        var size: Int
        /// The Swift spelling of its C type, or nil when it has none here (an
        /// array, an anonymous struct).
        var swiftType: String?
        var cType: String
    }

    var maps: [String] = []
    var programs: [Program] = []
    var settings: [Setting] = []

    init(elf bytes: [UInt8], name: String) throws {
        let elf = try ELF(bytes, name: name)
        for symbol in elf.symbols where symbol.global {
            let section = elf.sectionName(symbol.section)
            if symbol.isFunction, section != ".text" {
                programs.append(Program(name: symbol.name, section: section))
            } else if symbol.isObject, section == ".maps" {
                maps.append(symbol.name)
            }
        }
        guard let btfSection = elf.section(named: ".BTF") else {
            throw Failure(description: "\(name): no .BTF section (compile with -g)")
        }
        let btf = try BTF(Array(bytes[btfSection]), name: name)
        for (section, variables) in btf.dataSections where section == ".rodata" || section == ".data" || section == ".bss" {
            for variable in variables {
                let (cType, swiftType) = btf.spelling(of: variable.type)
                settings.append(Setting(
                    name: variable.name, section: section, size: variable.size, swiftType: swiftType, cType: cType))
            }
        }
        maps.sort()
        programs.sort { $0.name < $1.name }
        settings.sort { $0.name < $1.name }
    }
}

/// An ELF64 little-endian relocatable object: its sections and symbols.
struct ELF {
    struct Symbol {
        var name: String
        var section: Int
        var global: Bool
        var isFunction: Bool
        var isObject: Bool
    }

    private let bytes: [UInt8]
    private var sections: [(name: String, range: Range<Int>, type: UInt32, link: Int)] = []
    private(set) var symbols: [Symbol] = []

    init(_ bytes: [UInt8], name: String) throws {
        self.bytes = bytes
        guard bytes.count >= 64, bytes[0..<4] == [0x7f, 0x45, 0x4c, 0x46], bytes[4] == 2, bytes[5] == 1 else {
            throw Failure(description: "\(name): not a little-endian ELF64 object")
        }
        let sectionTable = Int(bytes.u64(0x28))
        let entrySize = Int(bytes.u16(0x3a))
        let count = Int(bytes.u16(0x3c))
        let namesIndex = Int(bytes.u16(0x3e))
        guard entrySize == 64, sectionTable + count * entrySize <= bytes.count, namesIndex < count else {
            throw Failure(description: "\(name): section header table out of bounds")
        }
        var raw: [(nameOffset: Int, range: Range<Int>, type: UInt32, link: Int)] = []
        for index in 0..<count {
            let at = sectionTable + index * entrySize
            let type = bytes.u32(at + 4)
            let offset = Int(bytes.u64(at + 0x18))
            let size = type == 8 ? 0 : Int(bytes.u64(at + 0x20))  // SHT_NOBITS has no bytes
            guard offset + size <= bytes.count else { throw Failure(description: "\(name): section \(index) out of bounds") }
            raw.append((Int(bytes.u32(at)), offset..<offset + size, type, Int(bytes.u32(at + 0x28))))
        }
        let names = raw[namesIndex].range
        sections = raw.map { (bytes.cString(at: names.lowerBound + $0.nameOffset, in: names), $0.range, $0.type, $0.link) }
        guard let table = sections.first(where: { $0.type == 2 }) else {  // SHT_SYMTAB
            throw Failure(description: "\(name): no symbol table")
        }
        let strings = sections[table.link].range
        for at in stride(from: table.range.lowerBound, to: table.range.upperBound, by: 24) {
            let info = bytes[at + 4]
            symbols.append(Symbol(
                name: bytes.cString(at: strings.lowerBound + Int(bytes.u32(at)), in: strings),
                section: Int(bytes.u16(at + 6)), global: info >> 4 == 1, isFunction: info & 0xf == 2,
                isObject: info & 0xf == 1))
        }
    }

    func sectionName(_ index: Int) -> String { index < sections.count ? sections[index].name : "" }

    func section(named name: String) -> Range<Int>? { sections.first(where: { $0.name == name })?.range }
}

/// The types of a .BTF section, enough to name a variable's type and list
/// the variables of each data section.
struct BTF {
    struct Variable {
        var name: String
        var type: Int
        var size: Int
    }

    private struct Entry {
        var kind: UInt32
        var name: String
        var sizeOrType: UInt32
        /// INT: its encoding word; ARRAY: element count.
        var extra: UInt32 = 0
        var members: [(name: String, type: Int, offset: Int, size: Int)] = []
    }

    private var types: [Entry] = [Entry(kind: 0, name: "void", sizeOrType: 0)]

    init(_ bytes: [UInt8], name: String) throws {
        guard bytes.count >= 24, bytes.u16(0) == 0xeb9f else { throw Failure(description: "\(name): bad BTF magic") }
        let header = Int(bytes.u32(4))
        let typesStart = header + Int(bytes.u32(8))
        let typesEnd = typesStart + Int(bytes.u32(12))
        let stringsStart = header + Int(bytes.u32(16))
        let strings = stringsStart..<stringsStart + Int(bytes.u32(20))
        guard typesEnd <= bytes.count, strings.upperBound <= bytes.count else {
            throw Failure(description: "\(name): BTF sections out of bounds")
        }
        func string(_ offset: UInt32) -> String { bytes.cString(at: strings.lowerBound + Int(offset), in: strings) }
        var at = typesStart
        while at < typesEnd {
            let info = bytes.u32(at + 4)
            let kind = (info >> 24) & 0x1f
            let vlen = Int(info & 0xffff)
            var type = Entry(kind: kind, name: string(bytes.u32(at)), sizeOrType: bytes.u32(at + 8))
            at += 12
            switch kind {
            case 1, 14, 17: type.extra = bytes.u32(at); at += 4  // INT, VAR, DECL_TAG
            case 3: type.sizeOrType = bytes.u32(at); type.extra = bytes.u32(at + 8); at += 12  // ARRAY
            case 4, 5: at += 12 * vlen  // STRUCT, UNION
            case 6: at += 8 * vlen  // ENUM
            case 13: at += 8 * vlen  // FUNC_PROTO
            case 15:  // DATASEC: (VAR type id, offset, size) per variable
                for index in 0..<vlen {
                    let entry = at + 12 * index
                    type.members.append(("", Int(bytes.u32(entry)), Int(bytes.u32(entry + 4)), Int(bytes.u32(entry + 8))))
                }
                at += 12 * vlen
            case 19: at += 12 * vlen  // ENUM64
            case 2, 7, 8, 9, 10, 11, 12, 16, 18: break
            default: throw Failure(description: "\(name): BTF kind \(kind) unknown to bpf-embed")
            }
            types.append(type)
        }
        guard at == typesEnd else { throw Failure(description: "\(name): BTF types overrun their section") }
    }

    /// Each data section's variables, in BTF order.
    var dataSections: [(String, [Variable])] {
        types.filter { $0.kind == 15 }.map { section in
            (section.name, section.members.compactMap { member in
                let variable = types[member.type]
                // VAR's word after the header is its linkage: 1, global; static
                // variables (0) are the program's own, not settings
                guard variable.kind == 14, variable.extra == 1 else { return nil }
                return Variable(name: variable.name, type: Int(variable.sizeOrType), size: member.size)
            })
        }
    }

    /// The C spelling of a type, and its Swift spelling when it has one: the
    /// fixed-width integers, and named structs as Swift imports them.
    func spelling(of id: Int) -> (c: String, swift: String?) {
        var id = id
        var qualifiers: [String] = []
        while id < types.count {
            let type = types[id]
            switch type.kind {
            case 9: qualifiers.append("volatile"); id = Int(type.sizeOrType)
            case 10: qualifiers.append("const"); id = Int(type.sizeOrType)
            case 8:  // TYPEDEF: the kernel's __u64 and friends say what they are
                let c = (qualifiers + [type.name]).joined(separator: " ")
                if let swift = Self.fixedWidth[type.name] { return (c, swift) }
                return (c, spelling(of: Int(type.sizeOrType)).swift)
            case 1:
                let signed = (type.extra >> 24) & 1 == 1
                let bits = Int(type.sizeOrType) * 8
                let c = (qualifiers + [type.name]).joined(separator: " ")
                return (c, [8, 16, 32, 64].contains(bits) ? "\(signed ? "Int" : "UInt")\(bits)" : nil)
            case 4:
                let c = (qualifiers + ["struct", type.name.isEmpty ? "(anonymous)" : type.name]).joined(separator: " ")
                return (c, type.name.isEmpty ? nil : type.name)
            default:
                return ((qualifiers + [type.name.isEmpty ? "(kind \(type.kind))" : type.name]).joined(separator: " "), nil)
            }
        }
        return ("?", nil)
    }

    private static let fixedWidth = [
        "__u8": "UInt8", "__u16": "UInt16", "__u32": "UInt32", "__u64": "UInt64",
        "__s8": "Int8", "__s16": "Int16", "__s32": "Int32", "__s64": "Int64",
    ]
}

extension Array where Element == UInt8 {
    func u16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[at + $1]) << (8 * $1) } }
    func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[at + $1]) << (8 * $1) } }

    func cString(at start: Int, in bounds: Range<Int>) -> String {
        guard bounds.contains(start) else { return "" }
        let end = self[start..<bounds.upperBound].firstIndex(of: 0) ?? bounds.upperBound
        return String(decoding: self[start..<end], as: UTF8.self)
    }
}
