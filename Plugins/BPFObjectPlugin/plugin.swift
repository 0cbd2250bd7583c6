import Foundation
import PackagePlugin

/// Compiles every `ebpf/*.bpf.c` with the toolchain's clang (which has the BPF
/// target) and embeds each object as base64 in one generated Swift file.
///
/// Only the generated `.swift` is declared as an output: an object file declared
/// as a plugin output would become a resource and pull Foundation's bundle code
/// into the module. `bpf-embed` runs clang and llvm-objcopy itself.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let ebpf = context.package.directoryURL.appending(path: "ebpf")
        let files = try FileManager.default.contentsOfDirectory(at: ebpf, includingPropertiesForKeys: nil)
        let programs = files.filter { $0.lastPathComponent.hasSuffix(".bpf.c") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let headers = files.filter { $0.pathExtension == "h" }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedBPFObjects.swift")
        let clang = try context.tool(named: "clang").url
        let objcopy = try context.tool(named: "llvm-objcopy").url
        var arguments = [
            "--clang", clang.path(percentEncoded: false),
            "--objcopy", objcopy.path(percentEncoded: false),
            "--include", ebpf.path(percentEncoded: false),
            "--scratch", context.pluginWorkDirectoryURL.path(percentEncoded: false),
            "--output", output.path(percentEncoded: false),
        ]
        arguments += programs.map { $0.path(percentEncoded: false) }
        return [
            .buildCommand(
                displayName: "Compiling and embedding \(programs.count) BPF programs",
                executable: try context.tool(named: "bpf-embed").url,
                arguments: arguments,
                inputFiles: programs + headers,
                outputFiles: [output]
            )
        ]
    }
}
