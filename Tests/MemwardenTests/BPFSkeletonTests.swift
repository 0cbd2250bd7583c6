import Testing

import MemwardenBPF
@testable import MemwardenKernel

/// The skeletons bpf-embed generates from the objects' ELF symbols and BTF
/// (Sources/bpf-embed/ObjectLayout.swift) against libbpf's own reading of the
/// same objects. Opening an object needs no privilege; loading it does, and
/// KernelProgramTests does that.
struct BPFSkeletonTests {
    @Test("the agent's skeleton names exactly the maps and programs libbpf finds in its object")
    func memwardenSkeletonMatchesLibbpf() throws {
        let object = try BPFObject(MemwardenSkeleton.object)
        // libbpf adds a map per data section ("memwarde.rodata"): the settings live there
        let declared = object.mapNames().filter { !$0.contains(".") }
        #expect(Set(declared) == Set(MemwardenSkeleton.Maps.all.map(\.name)))
        #expect(declared.count == MemwardenSkeleton.Maps.all.count)
        let programs = object.programs()
        #expect(programs.map(\.name).sorted() == MemwardenSkeleton.Programs.all.map(\.name).sorted())
        for program in MemwardenSkeleton.Programs.all {
            #expect(programs.first(where: { $0.name == program.name })?.section == program.section)
        }
        #expect(MemwardenSkeleton.Programs.mwRssStat.section == "tp/kmem/rss_stat")
    }

    @Test("the baseline program's skeleton has its one program and no maps")
    func benchEmptySkeletonMatchesLibbpf() throws {
        let object = try BPFObject(BenchEmptySkeleton.object)
        #expect(object.mapNames().filter { !$0.contains(".") }.isEmpty)
        #expect(BenchEmptySkeleton.Maps.all.isEmpty)
        #expect(object.programs().map(\.name) == BenchEmptySkeleton.Programs.all.map(\.name))
    }

    @Test("every setting's Swift type is as large as the variable in the object")
    func settingTypesMatchTheObject() {
        let settings = MemwardenSkeleton.Settings.self
        #expect(settings.cfgDet.matchesValueSize)
        #expect(settings.cfgDet.size == 128)
        #expect(settings.cfgStepBytes.matchesValueSize)
        #expect(settings.cfgHeartbeatNs.matchesValueSize)
        #expect(settings.cfgPageShift.matchesValueSize)
        #expect(settings.cfgHotMask.matchesValueSize)
        #expect([settings.cfgStepBytes.section, settings.cfgDet.section] == [".rodata", ".rodata"])
    }

    @Test("the agent's settings are written before load, and a value of the wrong size is refused with its name")
    func settingsAreWrittenAndSizesChecked() throws {
        let object = try BPFObject(MemwardenSkeleton.object)
        try object.setGlobal(MemwardenSkeleton.Settings.cfgStepBytes, 2 << 20)
        try object.setGlobal(MemwardenSkeleton.Settings.cfgDet, KernelConfiguration().detectorSettings)
        let wrong = BPFSetting<UInt32>("cfg_step_bytes", section: ".rodata", size: 8)
        let error = #expect(throws: KernelError.self) { try object.setGlobal(wrong, 1) }
        #expect(error?.description.contains("cfg_step_bytes") == true)
        #expect(error?.description.contains("8 bytes there, 4 given") == true)
        #expect(throws: KernelError.self) {
            try object.setGlobal(BPFSetting<UInt64>("cfg_no_such", section: ".rodata", size: 8), 1)
        }
    }
}
