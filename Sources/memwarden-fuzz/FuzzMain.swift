import Foundation

// One binary for every target: libFuzzer takes one entry point per binary, and one executable
// costs a plain `swift build` one link instead of thirteen. MEMWARDEN_FUZZ_TARGET names the
// parser (FuzzTarget); scripts/fuzz sets it.
let selected: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["MEMWARDEN_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")
        FileHandle.standardError.write(Data("memwarden-fuzz: set MEMWARDEN_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected.run(UnsafeBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}

#if FUZZING
/// libFuzzer's driver, for a binary that has its own main (SwiftPM names every executable's
/// entry point itself, so libFuzzer's main cannot be the one that runs).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32
#endif

@main
enum FuzzMain {
    static func main() {
        _ = selected
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzz))
        #else
        // Built without libFuzzer (a plain `swift build`): runs the files named on the
        // command line through the target once each, which replays a crash input under
        // a debugger or in a build without sanitizers.
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("memwarden-fuzz: cannot read \(path)\n".utf8))
                exit(1)
            }
            data.withUnsafeBytes { _ = fuzz($0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
            print("\(path): no crash")
        }
        #endif
    }
}
