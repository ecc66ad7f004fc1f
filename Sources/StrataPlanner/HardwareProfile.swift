import Foundation
import StrataTensor

/// The machine as the planner sees it: measured by `strata profile` (`Strata.Profiler`), cached
/// as JSON. The planner itself does no I/O: it gets this value.
public struct HardwareProfile: Codable, Sendable, Equatable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case cpu, cores, threads, memoryBytes = "memory_bytes", gemm, memoryReadBytesPerSecond = "memory_read_bytes_per_second", memoryReadRounds = "memory_read_rounds", diskReadBytesPerSecond = "disk_read_bytes_per_second", diskScatteredReadBytesPerSecond = "disk_scattered_read_bytes_per_second", diskWriteBytesPerSecond = "disk_write_bytes_per_second", diskPath = "disk_path", measuredAt = "measured_at", computeFactorWhileReading = "compute_factor_while_reading", readFactorWhileComputing = "read_factor_while_computing", widenBF16PerSecond = "widen_bf16_per_second", widenF16PerSecond = "widen_f16_per_second", elementwiseSecondsPerRow = "elementwise_seconds_per_row", passOverheadPerLayer = "pass_overhead_per_layer", bf16Gemm = "bf16_gemm", dequantPerSecond = "dequant_per_second", oneRowBytesPerSecond = "one_row_bytes_per_second", oneRowExactBytesPerSecond = "one_row_exact_bytes_per_second", openBLASCore = "open_blas_core", kernelPath = "kernel_path", otherLoad = "other_load", rounds }

    /// One timed GEMM: `[m, k] x [n, k]^T` took `seconds`.
    public struct GemmSample: Codable, Sendable, Equatable {
        public var m: Int, n: Int, k: Int
        public var seconds: Double
        public init(m: Int, n: Int, k: Int, seconds: Double) { self.m = m; self.n = n; self.k = k; self.seconds = seconds }
    }
    public var cpu: String
    public var cores: Int
    public var threads: Int
    public var memoryBytes: Int
    public var gemm: [GemmSample]
    /// The best memory read figure of the rounds (the honest bound of a decode step)
    public var memoryReadBytesPerSecond: Double
    /// Every round's memory read figure (nil in older profiles). On a shared VM they spread: 46.1
    /// and 73.7 GB/s minutes apart in one profile here.
    public var memoryReadRounds: [Double]?
    /// What predictions use: the median of the rounds (the best figure when there are none). A
    /// decode step reads at the machine's typical speed, not at its best minute's.
    public var typicalMemoryRead: Double {
        guard let r = memoryReadRounds?.filter({ $0 > 0 }).sorted(), !r.isEmpty else { return memoryReadBytesPerSecond }
        return r.count % 2 == 1 ? r[r.count / 2] : (r[r.count / 2 - 1] + r[r.count / 2]) / 2
    }
    public var diskReadBytesPerSecond: Double
    /// Scattered reads of a few MB, several in flight (`Profiler.scatteredReadBandwidth`): the
    /// expert cache's misses (nil: profiles older than it; the sequential figure then)
    public var diskScatteredReadBytesPerSecond: Double?
    public var diskWriteBytesPerSecond: Double
    public var diskPath: String
    public var measuredAt: String
    /// Contention, measured with a layer's GEMMs and O_DIRECT reads of the scratch file at once:
    /// the GEMMs' speed then over alone, and the reads' speed then over alone (nil: not measured,
    /// taken as 1).
    public var computeFactorWhileReading: Double?
    public var readFactorWhileComputing: Double?
    /// 16-bit weights widened to f32 per second (elements), as the engine does before a GEMM of
    /// more than one row (nil: not measured, no cost)
    public var widenBF16PerSecond: Double?
    public var widenF16PerSecond: Double?
    /// seconds per row of a layer's element-wise work outside the GEMMs (norms, RoPE, SwiGLU,
    /// residual adds) at hidden size 2048 (nil: not measured, no cost)
    public var elementwiseSecondsPerRow: Double?
    /// seconds a forward pass spends per layer beyond its GEMMs and element-wise work: handing
    /// work to the pool and back, the norms' and attention's jobs (the one-row layer pass less
    /// its seven matrices multiplied alone; nil: not measured, no cost)
    public var passOverheadPerLayer: Double?
    /// The layer pass at prefill row counts (64, 256, 512) with bf16 weights in the bf16-product
    /// mode (`Kernels.gemmBF16`, AVX-512 BF16), less its element-wise work, as `gemm` holds the f32
    /// pass: the prefill of quantized weights in the q8 mode and of 16-bit weights with
    /// `--prefill16 bf16` (nil: not measured, or the CPU has no AVX-512 BF16)
    public var bf16Gemm: [GemmSample]?
    /// Quantized weights dequantized to f32 per second (elements, over the pool), by dtype name
    /// (`q8_0`, `q4_0`, `q4_k`, `q6_k`): the bands a bf16-product prefill decodes before its
    /// products, once per pass (nil: not measured)
    public var dequantPerSecond: [String: Double]?
    /// Bytes of quantized weights per second through the one-row decode kernel with 8-bit
    /// activations, by dtype name (`Measure.oneRowBytesPerSecond`): a decode step over quantized
    /// weights reads at most this fast, even when memory is faster (nil: not measured, e.g. a CPU
    /// without AVX-512 VNNI; then the memory read figure alone)
    public var oneRowBytesPerSecond: [String: Double]?
    /// The same with exact f32 activations (`--activations f32`; every weight dequantized in
    /// registers), several times slower per byte than the 8-bit kernel (nil: not measured)
    public var oneRowExactBytesPerSecond: [String: Double]?
    /// OpenBLAS's core and the kernel layer's instruction-set path on the measured machine (nil
    /// in profiles older than these fields)
    public var openBLASCore: String?
    public var kernelPath: String?
    /// Fraction of the machine's CPU time (all cores) that other processes used while the profile
    /// was measured, 0 ... 1 (nil: not recorded)
    public var otherLoad: Double?
    /// Rounds measured; each compute and memory figure is the best of them (nil: one)
    public var rounds: Int?

    public init(cpu: String, cores: Int, threads: Int, memoryBytes: Int, gemm: [GemmSample], memoryReadBytesPerSecond: Double,
                diskReadBytesPerSecond: Double, diskWriteBytesPerSecond: Double, diskPath: String, measuredAt: String) {
        self.cpu = cpu; self.cores = cores; self.threads = threads; self.memoryBytes = memoryBytes; self.gemm = gemm
        self.memoryReadBytesPerSecond = memoryReadBytesPerSecond; self.diskReadBytesPerSecond = diskReadBytesPerSecond
        self.diskWriteBytesPerSecond = diskWriteBytesPerSecond; self.diskPath = diskPath; self.measuredAt = measuredAt
    }
}

extension HardwareProfile {
    /// What a profile is checked against: the machine that is planning now.
    public struct Machine: Sendable, Equatable {
        public var cpu: String, cores: Int, memoryBytes: Int, openBLASCore: String?
        public init(cpu: String, cores: Int, memoryBytes: Int, openBLASCore: String?) {
            self.cpu = cpu; self.cores = cores; self.memoryBytes = memoryBytes; self.openBLASCore = openBLASCore
        }
    }

    /// A profile older than this many days is called stale.
    public static let staleAfterDays = 30.0
    /// A profile measured while other processes used more than this fraction of the machine's
    /// CPU time is called measured under load (its rates may be a fraction of the machine's).
    public static let loadLimit = 0.2

    /// Why this profile may not describe `machine` today: stale, taken on another machine (CPU,
    /// cores, memory or OpenBLAS core differ), measured under load, or too old to say what load
    /// it was measured under. Empty when it can be trusted. Pure: the caller gives the machine and
    /// the date.
    public func warnings(machine: Machine, now: Date) -> [String] {
        var out: [String] = []
        if let at = ISO8601DateFormatter().date(from: measuredAt) {
            let days = now.timeIntervalSince(at) / 86400
            if days > Self.staleAfterDays { out.append(String(format: "the hardware profile is %.0f days old (measured %@)", days, measuredAt as NSString)) }
        } else {
            out.append("the hardware profile's date '\(measuredAt)' cannot be read")
        }
        var differs: [String] = []
        if cpu != machine.cpu { differs.append("CPU '\(cpu)', this machine '\(machine.cpu)'") }
        if cores != machine.cores { differs.append("\(cores) cores, this machine \(machine.cores)") }
        if machine.memoryBytes > 0, abs(Double(memoryBytes - machine.memoryBytes)) > 0.05 * Double(machine.memoryBytes) {
            differs.append("\(memoryBytes >> 20) MiB of memory, this machine \(machine.memoryBytes >> 20) MiB")
        }
        if let a = openBLASCore, let b = machine.openBLASCore, a != b { differs.append("OpenBLAS core \(a), this machine \(b)") }
        if !differs.isEmpty { out.append("the hardware profile describes another machine (" + differs.joined(separator: "; ") + ")") }
        let missing = DType.quantized.filter { (oneRowExactBytesPerSecond ?? [:])[$0.rawValue] == nil }
        if oneRowExactBytesPerSecond != nil && !missing.isEmpty {
            out.append("the hardware profile has no decode-kernel rate for \(missing.map(\.rawValue).joined(separator: ", ")) (measured before Strata read "
                       + "\(missing.count == 1 ? "it" : "them")): planned at the slowest measured type's until `strata profile` measures again")
        }
        if let load = otherLoad {
            if load > Self.loadLimit {
                out.append(String(format: "the hardware profile was measured under load (other processes used %.0f%% of the CPU)", load * 100))
            }
        } else {
            out.append("the hardware profile does not record the load it was measured under")
        }
        return out
    }
}
