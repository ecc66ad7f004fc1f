import ArgumentParser
import Foundation
import Strata

/// `strata bench-linear`: the few-row linear kernels against OpenBLAS on one Llama layer's
/// matrices, per weight dtype, instruction-set path and row count; the pool's wake-up cost; the
/// memory-read variants behind the bandwidth bound.
struct BenchLinear: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-linear",
        abstract: "Few-row linear kernels vs OpenBLAS on a Llama layer's shapes (weights GB/s, GFLOP/s), pool wake-up, memory-read variants.")
    @Option(help: "Hidden size.") var hidden = 2048
    @Option(help: "Key/value width (kv heads x head dim).") var kvDim = 256
    @Option(help: "FFN width.") var ffn = 5632
    @Option(help: "Copies of the layer (so the weights come from memory, not cache).") var layers = 4
    @Option(name: .customLong("rows"), parsing: .upToNextOption, help: "Row counts M: 1,4,16 or 1 4 16.") var rowLists: [IntList] = [IntList([1, 2, 4, 8, 16, 32])]
    var rows: [Int] { IntList.all(rowLists) }
    @Option(parsing: .upToNextOption, help: "Weight dtypes (\(DType.names); quantized weights hold arbitrary finite blocks).") var dtypes: [String] = ["f32", "f16", "bf16"]
    @Flag(help: "Every instruction-set path this CPU has, not only the best.") var allPaths = false
    @Flag(help: "Skip the OpenBLAS comparison.") var noBlas = false
    @Option(help: "Repeats (medians are reported).") var repeats = 5
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        guard layers >= 1, repeats >= 1, hidden >= 1, kvDim >= 1, ffn >= 1, rows.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
            throw ValidationError("sizes, --layers, --repeats and --rows must be positive (rows at most 4096)")
        }
        let types = try dtypes.map { s -> DType in
            guard let d = DType(rawValue: s) else { throw ValidationError("--dtypes: unknown dtype '\(s)' (\(DType.names))") }
            return d
        }
        for d in types where hidden % d.blockElements != 0 || ffn % d.blockElements != 0 {
            throw ValidationError("--dtypes \(d.rawValue): --hidden and --ffn must be multiples of its block of \(d.blockElements) weights")
        }
        let shapes = [(hidden, hidden), (kvDim, hidden), (kvDim, hidden), (hidden, hidden), (ffn, hidden), (ffn, hidden), (hidden, ffn)]
        let widest = max(hidden, ffn)
        let maxM = rows.max()!
        let x = Tensor(zeros: [maxM, widest]), y = Tensor(zeros: [maxM, widest])
        for i in 0..<x.count { x.f32[i] = Float((i * 37) % 101) / 101 - 0.5 }
        let scratch = Tensor(zeros: [4 << 20])
        let paths = allPaths ? Kernels.supportedPaths : [Kernels.path]
        let chosen = Kernels.path
        defer { Kernels.use(chosen) }
        print("threads \(Threads.count), kernels \(Kernels.path) (best \(Kernels.bestPath)), layer \(hidden)/\(kvDim)/\(ffn) x \(layers) copies")
        print("| dtype | M | path | ms per layer | weights GB/s | GFLOP/s | OpenBLAS ms | kernel vs OpenBLAS |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for dtype in types {
            let mats = (0..<layers).flatMap { l in shapes.map { s -> Tensor in
                let t = Tensor(storage: TensorStorage(byteCount: dtype.bytes(elements: s.0 * s.1), hugePages: true), dtype: dtype, shape: [s.0, s.1])
                let b = t.rawPointer.assumingMemoryBound(to: UInt16.self)
                for i in 0..<(dtype.bytes(elements: s.0 * s.1) / 2) { b[i] = UInt16(truncatingIfNeeded: 0x3C00 &+ ((i &* 2654435761 &+ l) >> 7) & 0x3FF) & 0x3FFF }
                return t
            } }
            let params = Double(shapes.reduce(0) { $0 + $1.0 * $1.1 })
            let weightBytes = Double(shapes.reduce(0) { $0 + dtype.bytes(elements: $1.0 * $1.1) })
            for m in rows {
                func kernelPass() {
                    for w in mats {
                        Kernels.linear(weight: w.rawPointer, dtype: dtype, outFeatures: w.shape[0], inFeatures: w.shape[1], x: x.f32, rows: m, y: y.f32)
                    }
                }
                func blasPass() {
                    for w in mats {
                        let n = w.shape[0], k = w.shape[1]
                        if dtype == .f32 {
                            BLAS.linear(x: x.f32, rows: m, inFeatures: k, weight: w.f32, outFeatures: n, y: y.f32)
                        } else {
                            let band = max(1, min(n, scratch.count / k))
                            var o = 0
                            while o < n {
                                let b = min(band, n - o)
                                HalfConversion.toF32(w.rawPointer + o * k * dtype.bytes(elements: 1), dtype: dtype, scratch.f32, count: b * k)
                                BLAS.linear(x: x.f32, rows: m, inFeatures: k, weight: scratch.f32, outFeatures: b, y: y.f32 + o, ldy: n)
                                o += b
                            }
                        }
                    }
                }
                func time(_ f: () -> Void) -> Double {
                    f()
                    var ts: [Double] = []
                    for _ in 0..<repeats { let t0 = Date(); f(); ts.append(Date().timeIntervalSince(t0)) }
                    return ts.sorted()[ts.count / 2] / Double(layers)
                }
                let skipBlas = noBlas || dtype.isQuantized  // no OpenBLAS counterpart for quantized weights
                let blas = skipBlas ? Double.nan : time(blasPass)
                for p in paths {
                    Kernels.use(p)
                    let t = time(kernelPass)
                    let vs = skipBlas ? "- | -" : String(format: "%.3f | %.2fx", blas * 1e3, blas / t)
                    print(String(format: "| %@ | %d | %@ | %.3f | %.1f | %.1f | %@ |", dtype.rawValue, m, p.description, t * 1e3,
                                 weightBytes / t / 1e9, 2 * params * Double(m) / t / 1e9, vs as NSString))
                }
                Kernels.use(chosen)
                // the bf16-product GEMM (`--prefill16 bf16`, or quantized weights in the q8 mode) on the same rows
                if Kernels.prefillUsesBF16Products(dtype: dtype) {
                    let t = time {
                        for w in mats {
                            _ = Kernels.gemmBF16(weight: w.rawPointer, dtype: dtype, outFeatures: w.shape[0], inFeatures: w.shape[1],
                                                 x: x.f32, rows: m, y: y.f32, scratch: scratch.f32, scratchElements: scratch.count)
                        }
                    }
                    let vs = skipBlas ? "- | -" : String(format: "%.3f | %.2fx", blas * 1e3, blas / t)
                    print(String(format: "| %@ | %d | bf16 products | %.3f | %.1f | %.1f | %@ |", dtype.rawValue, m, t * 1e3,
                                 weightBytes / t / 1e9, 2 * params * Double(m) / t / 1e9, vs as NSString))
                }
            }
        }
        // the pool: a job right after another (workers spinning) and after a pause (workers asleep)
        let n = 20_000
        var t0 = Date()
        for _ in 0..<n { Threads.parallelFor(Threads.count) { _ in } }
        let hot = Date().timeIntervalSince(t0) / Double(n)
        let before = Kernels.poolSleepWakeups
        var cold: [Double] = []
        for _ in 0..<50 {
            FileIO.sleep(microseconds: 2000)
            t0 = Date()
            Threads.parallelFor(Threads.count) { _ in }
            cold.append(Date().timeIntervalSince(t0))
        }
        print(String(format: "pool: empty job %.2f us with workers spinning, %.1f us after a 2 ms pause (median; %d of 50 woke a sleeping worker)",
                     hot * 1e6, cold.sorted()[25] * 1e6, Kernels.poolSleepWakeups - before))
        print("memory read variants (512 MiB, median of 3):")
        for v in Measure.memoryReadVariants(bytes: 512 << 20, repeats: 3) { print("  \(v)") }
    }
}
