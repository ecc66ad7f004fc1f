@_exported import StrataTensor
import StrataPlanner
import Foundation

/// Facts about the machine and the BLAS that Strata runs on.
public struct MachineInfo: Codable, Sendable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case cpu, cores, threads, openBLASCore = "open_blas_core", openBLASConfig = "open_blas_config", memoryBytes = "memory_bytes" }

    public var cpu: String
    public var cores: Int
    public var threads: Int
    public var openBLASCore: String
    public var openBLASConfig: String
    public var memoryBytes: Int

    public static func current() -> MachineInfo {
        var cpu = "unknown"
        if let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let v = line.split(separator: ":", maxSplits: 1).last {
            cpu = v.trimmingCharacters(in: .whitespaces)
        }
        return MachineInfo(cpu: cpu, cores: ProcessInfo.processInfo.activeProcessorCount, threads: Threads.count,
                           openBLASCore: BLAS.coreName, openBLASConfig: BLAS.config,
                           memoryBytes: Int(ProcessInfo.processInfo.physicalMemory))
    }
}

extension MachineInfo {
    /// This machine as a profile is checked against (`HardwareProfile.warnings`).
    public var profileMachine: HardwareProfile.Machine {
        .init(cpu: cpu, cores: cores, memoryBytes: memoryBytes, openBLASCore: openBLASCore)
    }
}

/// Sizes in bytes, human-readable: `1.5 GiB`.
package func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), u = 0
    while abs(v) >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f ", v) + units[u]
}

/// Median of a non-empty sample.
package func median(_ xs: [Double]) -> Double {
    precondition(!xs.isEmpty, "median of an empty sample")
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Monotonic seconds.
package func now() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// Parses a byte size: `1073741824`, `512MiB`, `1.5GiB`, `2G` (G = GiB, as in most CLIs), `800MB` (10^6).
/// nil for anything else, negative, or 2^62 bytes and more (a size no machine has, and one that
/// sums of sizes cannot overflow from).
package func parseByteSize(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [("TiB", 1_099_511_627_776), ("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024),
                                     ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3),
                                     ("T", 1_099_511_627_776), ("G", 1_073_741_824), ("M", 1_048_576), ("K", 1024), ("B", 1)]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v >= 0, v.isFinite, v * m < 0x1p62 else { return nil }
        return Int(v * m)
    }
    guard let v = Int(t), v >= 0, v < 1 << 62 else { return nil }
    return v
}

/// A long job (quantize, synth) stopped by `Interrupt` before it finished: nothing was written.
public struct Interrupted: Error, CustomStringConvertible, Sendable {
    public init() {}
    public var description: String { "interrupted: stopped before the output was complete; nothing was written" }
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP as a request to stop, for a program that wants it (the
/// CLI): `install()` makes the signals set a flag instead of killing the process, and the program
/// passes `{ Interrupt.requested }` as the `shouldStop` of what it runs (`Generator`,
/// `BatchEngine`, `Session.RunOptions`, `QuantizeModel.run`, `Synth.write`), which then end
/// their requests as `.cancelled` between steps (so the caller can print what was generated,
/// write its report and remove its files) or stop at their next chunk and remove what they wrote
/// (`Interrupted`). The library reads the flag nowhere itself. A second signal exits at once
/// (status 130) after the `onForcedExit` cleanups.
public enum Interrupt {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var flag = false
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var cleanups: [() -> Void] = []
    nonisolated(unsafe) private static var notice = "\ninterrupted: finishing the step (Ctrl-C again to exit now)\n"

    /// What the first signal prints (a chat says its answer stopped).
    public static func setNotice(_ text: String) { lock.lock(); notice = text; lock.unlock() }

    /// Whether a stop was requested.
    public static var requested: Bool { lock.lock(); defer { lock.unlock() }; return flag }

    /// Requests a stop (what the signal does; tests call it directly).
    public static func request() { lock.lock(); flag = true; lock.unlock() }
    public static func reset() { lock.lock(); flag = false; lock.unlock() }

    /// Work to do if the process must exit at once (a second signal): remove temporary files.
    public static func onForcedExit(_ f: @escaping () -> Void) { lock.lock(); cleanups.append(f); lock.unlock() }

    public static func install() {
        lock.lock()
        defer { lock.unlock() }
        guard sources.isEmpty else { return }
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: DispatchQueue.global())
            src.setEventHandler {
                lock.lock()
                let second = flag
                flag = true
                let work = cleanups
                let text = notice
                lock.unlock()
                if second {
                    for f in work { f() }
                    FileHandle.standardError.write(Data("\ninterrupted twice: exiting now\n".utf8))
                    exit(130)
                }
                FileHandle.standardError.write(Data(text.utf8))
            }
            src.resume()
            sources.append(src)
        }
    }
}

/// What RAM this process can still take.
public enum MemoryInfo {
    /// The kernel's MemAvailable (/proc/meminfo), lowered to what the memory cgroup this process
    /// runs in has left (cgroup v2 `memory.max` - `memory.current`); the machine's physical memory
    /// where neither can be read.
    public static func availableBytes() -> Int {
        var avail = Int(ProcessInfo.processInfo.physicalMemory)
        if let s = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Int(line.split(separator: " ").dropFirst().first ?? "") {
            avail = kb * 1024
        }
        if let cg = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
           let path = cg.split(separator: "\n").first(where: { $0.hasPrefix("0::") })?.dropFirst(3) {
            let dir = "/sys/fs/cgroup" + path
            func read(_ f: String) -> Int? {
                (try? String(contentsOfFile: dir + "/" + f, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            if let max = read("memory.max"), let current = read("memory.current") { avail = min(avail, Swift.max(0, max - current)) }
        }
        return avail
    }
}

/// Strata's version (`strata --version`): the minor number counts the development sessions.
public enum StrataVersion {
    public static let string = "0.15.0"
}
