import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure GEMM rates, memory and disk bandwidth for the planner (cached).")
    @Option(name: .customLong("disk-path"), help: "Directory on the disk that will hold models and KV swap.") var diskPath: String = "."
    @Option(name: .customLong("disk-file"), help: "Measure the disk read speed on this existing file (e.g. a model's safetensors, the file that will stream) instead of a fresh scratch file; updates the cached profile's disk read figure.") var diskFile: String?
    @Option(help: "Also write the profile JSON here.") var out: String?
    @Flag(help: "Measure again even when a cached profile exists.") var refresh = false
    @OptionGroup var threads: ThreadOption
    func run() throws {
        if let out { try FileIO.requireReplaceable(out) }  // before any work
        try threads.apply()
        var p: HardwareProfile
        if let diskFile {
            p = try Profiler.cached() ?? Profiler.measure(diskPath: diskPath) { eprint($0) }
            p.diskReadBytesPerSecond = try Profiler.fileReadBandwidth(path: diskFile)
            p.diskScatteredReadBytesPerSecond = try Profiler.scatteredReadBandwidth(path: diskFile)
            p.diskPath = diskFile
            eprint(String(format: "disk read on %@: %.0f MB/s; scattered 8 MiB reads, 4 in flight: %.0f MB/s", diskFile as NSString,
                          p.diskReadBytesPerSecond / 1e6, (p.diskScatteredReadBytesPerSecond ?? 0) / 1e6))
            try Profiler.save(p)
        } else if !refresh, let c = Profiler.cached() {
            eprint("using the cached profile \(Profiler.cachePath) (--refresh measures again)")
            p = c
        } else {
            p = try Profiler.measure(diskPath: diskPath) { eprint($0) }
            try Profiler.save(p)
            eprint("saved \(Profiler.cachePath)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(p)
        if let out { try FileIO.writeAtomically(out, data) }
        print(String(decoding: data, as: UTF8.self))
    }
}

/// The cached profile, or measured now (and cached), logging to stderr.
func loadProfile() throws -> HardwareProfile { try Session.hardwareProfile { eprint($0) } }
