import Foundation
import StrataTensor

/// The machine as the planner sees it: measured by `strata profile` (`Strata.Profiler`), cached
/// as JSON. The planner itself does no I/O: it gets this value.
public struct HardwareProfile: Codable, Sendable, Equatable {
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
    public var memoryReadBytesPerSecond: Double
    public var diskReadBytesPerSecond: Double
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

    public init(cpu: String, cores: Int, threads: Int, memoryBytes: Int, gemm: [GemmSample], memoryReadBytesPerSecond: Double,
                diskReadBytesPerSecond: Double, diskWriteBytesPerSecond: Double, diskPath: String, measuredAt: String) {
        self.cpu = cpu; self.cores = cores; self.threads = threads; self.memoryBytes = memoryBytes; self.gemm = gemm
        self.memoryReadBytesPerSecond = memoryReadBytesPerSecond; self.diskReadBytesPerSecond = diskReadBytesPerSecond
        self.diskWriteBytesPerSecond = diskWriteBytesPerSecond; self.diskPath = diskPath; self.measuredAt = measuredAt
    }
}
