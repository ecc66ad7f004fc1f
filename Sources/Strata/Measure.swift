import Foundation
import StrataTensor
import StrataFormats
import StrataModels
import StrataMemory

/// Quick measurements of the machine's limits, used by benchmarks and the planner's profile.
public enum Measure {
    /// One way of reading memory and the speed it reached.
    public struct ReadVariant: Sendable, CustomStringConvertible {
        /// e.g. "avx2, 2 threads, prefetch off" or "linear kernel avx2 (f32, 1 row), 2 threads"
        public let name: String
        public let bytesPerSecond: Double
        public var description: String { String(format: "%@: %.1f GB/s", name as NSString, bytesPerSecond / 1e9) }
    }

    /// Memory read bandwidth in bytes/s, the best of `memoryReadVariants`: the honest bound of a
    /// weight-bound decode step is at least what the fastest way of reading this machine's memory
    /// reaches, not what one loop does.
    /// `between(round)` runs after each round of passes (see `memoryReadVariants`).
    public static func memoryReadBandwidth(bytes: Int = 1 << 30, repeats: Int = 5, between: ((Int) throws -> Void)? = nil) rethrows -> Double {
        try memoryReadVariants(bytes: bytes, repeats: repeats, between: between).map(\.bytesPerSecond).max() ?? 0
    }

    /// The read kernel (`Kernels.readSum`) over a `bytes`-sized buffer (far larger than the
    /// caches) with every SIMD path, 1 and `Threads.count` threads, and software prefetch off and
    /// on; and the decode kernel itself (`Kernels.linear`, one row) over the same bytes as an
    /// f32 and as an f16 `[rows, 4096]` matrix. After a warm-up pass of each, `repeats` rounds
    /// time one pass of every variant in turn; each variant reports the median of its passes.
    /// Round by round, a burst of this host's bandwidth (it swings by a third within minutes)
    /// lands on one pass of several variants, which their medians drop; variant after variant,
    /// it lifted every pass of one, and the best of the medians took it. `between(round)`, when
    /// given, runs after each round: a benchmark that runs its own work there (bench-model's
    /// decode, in slices) gets a bound read over the same seconds as that work.
    public static func memoryReadVariants(bytes: Int = 1 << 30, repeats: Int = 5, between: ((Int) throws -> Void)? = nil) rethrows -> [ReadVariant] {
        let n = bytes / 4
        let storage = TensorStorage(byteCount: n * 4, hugePages: true)
        let p = storage.base.assumingMemoryBound(to: Float.self)
        for i in stride(from: 0, to: n, by: 1024) { p[i] = 1 }
        let box = UncheckedSendable(p)
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { sink.deallocate() }
        sink.initialize(repeating: 0, count: 64)
        let sinkBox = UncheckedSendable(sink)
        let paths = Kernels.supportedPaths.filter { $0 != .portable }
        // (name, bytes one pass reads, one pass)
        var variants: [(String, Int, () -> Void)] = []
        for path in paths.isEmpty ? [.portable] : paths {
            for threads in Set([1, Threads.count]).sorted() {
                for pf in [0, 2048] {
                    variants.append(("\(path), \(threads) thread\(threads == 1 ? "" : "s"), prefetch \(pf > 0 ? "\(pf) B" : "off")", n * 4, {
                        Threads.parallelFor(threads, minChunk: 1) { r in
                            for c in r {
                                let lo = n * c / threads, hi = n * (c + 1) / threads
                                sinkBox.value[c % 64] += Kernels.readSum(path: path, box.value + lo, count: hi - lo, prefetchBytes: pf)
                            }
                        }
                    }))
                }
            }
        }
        // the decode kernel itself over the same bytes, as f32 [rows, 4096] and as f16 [rows, 4096]
        let k = 4096
        let x = Tensor(zeros: [k])
        for i in 0..<k { x.f32[i] = 1 }
        let y = Tensor(zeros: [n * 4 / (k * 2)])
        for dtype in [DType.f32, .f16] {
            let rows = n * 4 / (k * dtype.byteSize)
            variants.append(("linear kernel \(Kernels.path) (\(dtype), 1 row), \(Threads.count) thread\(Threads.count == 1 ? "" : "s")", rows * k * dtype.byteSize, {
                Kernels.linear(weight: storage.base, dtype: dtype, outFeatures: rows, inFeatures: k, x: x.f32, rows: 1, y: y.f32)
            }))
        }
        for v in variants { v.2() }  // warm-up
        var times = [[Double]](repeating: [], count: variants.count)
        for round in 0..<max(1, repeats) {
            for (i, v) in variants.enumerated() {
                let t0 = now()
                v.2()
                times[i].append(now() - t0)
            }
            try between?(round)
        }
        return variants.indices.map { ReadVariant(name: variants[$0].0, bytesPerSecond: Double(variants[$0].1) / median(times[$0])) }
    }

    /// sgemm FLOP/s for `[m, k] x [n, k]^T` through the BLAS wrapper (median of `repeats`).
    public static func gemmFlops(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
        let a = Tensor(zeros: [m, k]), w = Tensor(zeros: [n, k]), c = Tensor(zeros: [m, n])
        for i in stride(from: 0, to: a.count, by: 7) { a.f32[i] = 0.01 }
        for i in stride(from: 0, to: w.count, by: 5) { w.f32[i] = 0.01 }
        BLAS.linear(x: a.f32, rows: m, inFeatures: k, weight: w.f32, outFeatures: n, y: c.f32)
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = now()
            BLAS.linear(x: a.f32, rows: m, inFeatures: k, weight: w.f32, outFeatures: n, y: c.f32)
            times.append(now() - t0)
        }
        return 2 * Double(m) * Double(n) * Double(k) / median(times)
    }

    /// Quantized weights of `dtype` dequantized to f32 per second (`Kernels.dequantize`, over the
    /// pool as a prefill's bands are): bands of 4M weights from a source of `elements` weights
    /// (zero blocks: the work does not depend on the values; every page written first, so they
    /// are read from memory), the median of `repeats` passes.
    public static func dequantElementsPerSecond(dtype: DType, elements: Int = 64 << 20, band: Int = 4 << 20, repeats: Int = 3) -> Double {
        let src = TensorStorage(byteCount: dtype.bytes(elements: elements), hugePages: true)
        // every page written, so the reads come from memory and not from the shared zero page
        let raw = src.base.assumingMemoryBound(to: UInt8.self)
        for i in stride(from: 0, to: dtype.bytes(elements: elements), by: 4096) { raw[i] = 0 }
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: band)
        defer { dst.deallocate() }
        var times: [Double] = []
        for _ in 0..<(repeats + 1) {
            let t0 = now()
            var o = 0
            while o < elements {
                Kernels.dequantize(src.base + dtype.bytes(elements: o), dtype: dtype, dst, count: min(band, elements - o))
                o += band
            }
            times.append(now() - t0)
        }
        times.removeFirst()
        return Double(elements) / median(times)
    }

    /// Bytes of quantized `dtype` weights per second through the one-row linear (a decode step's
    /// kernel, in the activations mode now set), over the pool: `[rows, 2048]` blocks filling
    /// `bytes` (far more than the caches; every page written first, so none is the shared zero
    /// page), the median of `repeats` passes. The 8-bit kernel decodes and multiplies every block,
    /// so on a machine whose memory is fast for its cores this is below the memory read figure.
    public static func oneRowBytesPerSecond(dtype: DType, activations: Kernels.Activations? = nil, bytes: Int = 512 << 20, repeats: Int = 3) -> Double {
        let k = 2048, rowBytes = dtype.bytes(elements: k), rows = bytes / rowBytes
        let w = TensorStorage(byteCount: rows * rowBytes, hugePages: true)
        let raw = w.base.assumingMemoryBound(to: UInt8.self)
        for i in stride(from: 0, to: rows * rowBytes, by: 4096) { raw[i] = 0 }
        if dtype == .mxfp4 {
            // zero pages are scales of 2^-128 (subnormal: every product a slow microcode assist);
            // real MXFP4 scales are near 2^-8
            for i in stride(from: 0, to: rows * rowBytes, by: dtype.blockBytes) { raw[i] = 120 }
        }
        return Double(rows * rowBytes) / oneRowLinearSeconds(w.base, dtype: dtype, rows: rows, k: k, repeats: repeats, activations: activations)
    }

    /// Median seconds of the one-row `Kernels.linear` over `[rows, k]` weights of `dtype` at
    /// `weight` (x all ones), over `repeats` passes after a warm-up pass.
    static func oneRowLinearSeconds(_ weight: UnsafeRawPointer, dtype: DType, rows: Int, k: Int, repeats: Int,
                                    activations: Kernels.Activations? = nil) -> Double {
        let x = Tensor(zeros: [k]), y = Tensor(zeros: [rows])
        for i in 0..<k { x.f32[i] = 1 }
        var times: [Double] = []
        for _ in 0..<(repeats + 1) {
            let t0 = now()
            Kernels.linear(weight: weight, dtype: dtype, outFeatures: rows, inFeatures: k, x: x.f32, rows: 1, y: y.f32, activations: activations)
            times.append(now() - t0)
        }
        times.removeFirst()
        return median(times)
    }

    /// A Llama layer's seven f32 weight matrices, `[out, in]`: q and o `[hidden, hidden]`, k and v
    /// `[kvDim, hidden]`, gate and up `[ffn, hidden]`, down `[hidden, ffn]`; every page touched.
    static func layerMatrices(hidden: Int, kvDim: Int, ffn: Int, dtype: DType = .f32) -> [Tensor] {
        precondition(dtype == .f32 || dtype == .bf16, "Measure.layerMatrices: f32 or bf16, not \(dtype)")
        let shapes = [(hidden, hidden), (kvDim, hidden), (kvDim, hidden), (hidden, hidden), (ffn, hidden), (ffn, hidden), (hidden, ffn)]
        return shapes.map { s in
            let w = Tensor(storage: TensorStorage(byteCount: s.0 * s.1 * dtype.byteSize, hugePages: true), dtype: dtype, shape: [s.0, s.1])
            if dtype == .bf16 {
                let p = w.rawPointer.assumingMemoryBound(to: UInt16.self)
                for i in stride(from: 0, to: w.count, by: 512) { p[i] = HalfConversion.f32ToBF16(0.01) }
            } else {
                for i in stride(from: 0, to: w.count, by: 1024) { w.f32[i] = 0.01 }
            }
            return w
        }
    }

    /// Seconds of `[rows, k] x [n, k]^T` GEMMs over one Llama layer's matrices (`layerMatrices`),
    /// back to back through the BLAS wrapper; the median of `repeats` (the profile's contention
    /// measurement).
    public static func layerGemmSeconds(rows: Int, hidden: Int = 2048, kvDim: Int = 256, ffn: Int = 5632, repeats: Int = 7) -> Double {
        let ws = layerMatrices(hidden: hidden, kvDim: kvDim, ffn: ffn)
        let x = Tensor(zeros: [rows, max(hidden, ffn)]), y = Tensor(zeros: [rows, max(hidden, ffn)])
        for i in stride(from: 0, to: x.count, by: 7) { x.f32[i] = 0.5 }
        var times: [Double] = []
        for r in 0..<(repeats + 1) {
            let t0 = now()
            for w in ws { BLAS.linear(x: x.f32, rows: rows, inFeatures: w.shape[1], weight: w.f32, outFeatures: w.shape[0], y: y.f32) }
            if r > 0 { times.append(now() - t0) }
        }
        return median(times)
    }

    /// 16-bit values widened to f32 per second, as `WeightMatrix` does before a many-row GEMM:
    /// bands of 4M elements from a 256 MB source (so it comes from memory) into one scratch band,
    /// on one thread; the median of `repeats` passes.
    public static func widenElementsPerSecond(dtype: DType, elements: Int = 128 << 20, band: Int = 4 << 20, repeats: Int = 3) -> Double {
        let src = TensorStorage(byteCount: elements * 2, hugePages: true)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: band)
        defer { dst.deallocate() }
        let p = src.base.assumingMemoryBound(to: UInt16.self)
        for i in stride(from: 0, to: elements, by: 512) { p[i] = 0x3c00 }
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = now()
            var o = 0
            while o < elements {
                let n = min(band, elements - o)
                HalfConversion.toF32(src.base + o * 2, dtype: dtype, dst, count: n)
                o += n
            }
            times.append(now() - t0)
        }
        return Double(elements) / median(times)
    }

    /// Seconds per row of a Llama layer's element-wise work outside the GEMMs, through the same
    /// kernels the forward pass calls: two RMSNorms and two residual adds over `hidden`, RoPE on
    /// the query and key heads, SwiGLU over `ffn`; the median of `repeats` at `rows` rows.
    public static func layerElementwiseSecondsPerRow(rows: Int = 512, hidden: Int = 2048, heads: Int = 32, kvHeads: Int = 4, headDim: Int = 64,
                                                    ffn: Int = 5632, repeats: Int = 5) -> Double {
        let x = Tensor(zeros: [rows, hidden]), r = Tensor(zeros: [rows, hidden]), w = Tensor(zeros: [hidden])
        let q = Tensor(zeros: [rows, heads * headDim]), k = Tensor(zeros: [rows, kvHeads * headDim])
        let g = Tensor(zeros: [rows, ffn]), u = Tensor(zeros: [rows, ffn])
        for i in 0..<hidden { w.f32[i] = 1 }
        for i in stride(from: 0, to: x.count, by: 3) { x.f32[i] = 0.1 }
        let rope = RoPE(headDim: headDim, theta: 10000)
        let positions = (0..<rows).map { Int32($0) }
        var times: [Double] = []
        for _ in 0..<(repeats + 1) {
            let t0 = now()
            Ops.rmsNorm(x.f32, weight: w.f32, eps: 1e-5, r.f32, rows: rows, n: hidden)
            positions.withUnsafeBufferPointer { p in
                rope.apply(q.f32, tokens: rows, heads: heads, positions: p)
                rope.apply(k.f32, tokens: rows, heads: kvHeads, positions: p)
            }
            Ops.add(x.f32, r.f32, x.f32, count: rows * hidden)
            Ops.rmsNorm(x.f32, weight: w.f32, eps: 1e-5, r.f32, rows: rows, n: hidden)
            Ops.swiglu(g.f32, u.f32, count: rows * ffn)
            Ops.add(x.f32, r.f32, x.f32, count: rows * hidden)
            times.append(now() - t0)
        }
        times.removeFirst()
        return median(times) / Double(rows)
    }
}

/// Weights held in memory by name, for timing the engine's own forward pass without a file.
final class MemoryWeightStore: WeightStore, @unchecked Sendable {
    let tensors: [String: Tensor]
    init(_ tensors: [String: Tensor]) { self.tensors = tensors }
    func contains(_ name: String) -> Bool { tensors[name] != nil }
    func tensor(_ name: String, layer: Int) throws -> Tensor {
        guard let t = tensors[name] else { throw SafetensorsError.missingTensor(name: name, checkpoint: location) }
        return t
    }
    func acquire(layer: Int) throws {}
    func release(layer: Int) {}
    var location: String { "(in-memory profile model)" }
}

extension Measure {
    /// Seconds per layer of the engine's own Llama forward pass (`LlamaModel.forward` over a paged
    /// KV cache) at each row count in `rows`: `layers` f32 layers of the given shape in memory
    /// (cycled, so the weights come from memory as in a real pass), a vocabulary of 256 so the
    /// head costs nothing, one row per sequence at position 0 so attention costs nothing. The
    /// figure holds the GEMMs, the element-wise work between them and the threads' hand-offs,
    /// as a forward pass runs them; the median of `repeats` rounds over the row counts.
    public static func layerPassSeconds(rows: [Int], hidden: Int = 2048, heads: Int = 32, kvHeads: Int = 4, ffn: Int = 5632,
                                        layers: Int = 4, repeats: Int = 5, dtype: DType = .f32) throws -> [Double] {
        try layerPass(rows: rows, hidden: hidden, heads: heads, kvHeads: kvHeads, ffn: ffn, layers: layers, repeats: repeats, dtype: dtype).seconds
    }

    /// `layerPassSeconds`, and, when `rows` holds 1, the seconds per layer by which the one-row
    /// pass exceeds its seven matrices multiplied alone (`Kernels.linear` back to back, same
    /// weights, each right after a one-row pass; the median of the per-round differences, which
    /// are a few percent of either time, less than their spread): what a decode step spends per
    /// layer outside its GEMVs (element-wise work, hand-offs to the pool, attention's jobs).
    public static func layerPass(rows: [Int], hidden: Int = 2048, heads: Int = 32, kvHeads: Int = 4, ffn: Int = 5632,
                                 layers: Int = 4, repeats: Int = 5, dtype: DType = .f32) throws -> (seconds: [Double], oneRowBeyondGEMVs: Double?) {
        let vocab = 256, hd = hidden / heads
        let shape = SynthShape(hidden: hidden, intermediate: ffn, layers: layers, heads: heads, kvHeads: kvHeads, vocab: vocab,
                               maxPositions: 2048, tied: false, ropeTheta: 10000, rmsEps: 1e-5)
        let cfg = try JSONDecoder().decode(LlamaConfig.self, from: JSONSerialization.data(withJSONObject: LlamaArchitecture.synthConfig(shape)))
        var t: [String: Tensor] = [:]
        func filled(_ shape: [Int], _ fill: Float) -> Tensor {
            let w = Tensor(storage: TensorStorage(byteCount: shape.reduce(4, *), hugePages: true), dtype: .f32, shape: shape)
            for i in 0..<w.count { w.f32[i] = fill }
            return w
        }
        // the layer's matrices in the order layerMatrices makes them
        let order: [TensorRole] = [.attentionQuery, .attentionKey, .attentionValue, .attentionOutput, .mlpGate, .mlpUp, .mlpDown]
        var matrices: [Int: [Tensor]] = [:]
        for (name, dims) in LlamaArchitecture.synthTensors(shape) {
            guard let place = LlamaArchitecture.place(of: name) else { continue }
            switch place.role {
            case .tokenEmbedding: t[name] = filled(dims, 0.02)
            case .outputHead: t[name] = filled(dims, 0.01)
            case .attentionNorm, .mlpNorm, .finalNorm: t[name] = filled(dims, 1)
            default:
                guard let l = place.layer, let i = order.firstIndex(of: place.role) else { continue }
                if matrices[l] == nil { matrices[l] = layerMatrices(hidden: hidden, kvDim: kvHeads * hd, ffn: ffn, dtype: dtype) }
                t[name] = matrices[l]![i]
            }
        }
        let maxRows = rows.max() ?? 1
        let model = try LlamaModel(config: cfg.family, store: MemoryWeightStore(t), maxRows: maxRows)
        let kv = PagedKVCache(layers: layers, kvDim: kvHeads * hd, headDim: hd, blockSize: 16, blockCount: maxRows + 1, maxContext: 16)
        let layout = BatchLayout(capacity: maxRows)
        let tokens = (0..<maxRows).map { Int32($0 % vocab) }
        func pass(_ m: Int) throws -> Double {
            layout.removeAll()
            for s in 0..<m {
                kv.startSequence(s, prompt: [tokens[s]])
                try kv.reserve(s, newTokens: 1)
                layout.append(sequence: s, rows: 1, startPosition: 0, logits: .none)
            }
            defer { for s in 0..<m { kv.free(s) } }
            let t0 = now()
            _ = try tokens.withUnsafeBufferPointer { try model.forward(UnsafeBufferPointer(rebasing: $0[0..<m]), layout: layout, kv: kv) }
            return (now() - t0) / Double(layers)
        }
        // rounds over all row counts (not repeats of one count in a row), so a slow spell of
        // this shared machine spreads over the counts instead of bending one of them
        let xs = Tensor(zeros: [max(hidden, ffn)]), ys = Tensor(zeros: [max(hidden, ffn)])
        for i in 0..<xs.count { xs.f32[i] = 0.01 }
        func linearsAlone() -> Double {
            let t0 = now()
            for l in 0..<layers {
                for w in matrices[l] ?? [] {
                    Kernels.linear(weight: w.rawPointer, dtype: w.dtype, outFeatures: w.shape[0], inFeatures: w.shape[1], x: xs.f32, rows: 1, y: ys.f32)
                }
            }
            return (now() - t0) / Double(layers)
        }
        for m in rows { _ = try pass(m) }  // warm-up: workspace, BLAS buffers, first touches
        var times = [[Double]](repeating: [], count: rows.count)
        var alone: [Double] = []
        for _ in 0..<repeats {
            for (i, m) in rows.enumerated() {
                times[i].append(try pass(m))
                // right after the one-row pass, so the two see the same spell of this machine
                if m == 1 { alone.append(linearsAlone()) }
            }
        }
        guard let one = rows.firstIndex(of: 1) else { return (times.map { median($0) }, nil) }
        return (times.map { median($0) }, median(zip(times[one], alone).map { $0 - $1 }))
    }
}

extension Measure {
    /// CPU time of the whole machine and of this process, from /proc (Linux), to tell how much of
    /// the machine other processes used over an interval: a profile measured while something else
    /// ran reports a fraction of the machine's rates.
    public struct CPUTimes: Sendable {
        /// ticks (USER_HZ) summed over all CPUs: busy (user, nice, system, irq, softirq, steal) and all
        public var busy: Int, total: Int
        /// ticks this process used (user + system, all threads)
        public var own: Int

        /// Now; nil where /proc cannot be read.
        public static func now() -> CPUTimes? {
            // /proc files report size 0: read as text, not by size
            guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
                  let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
            let f = line.split(separator: " ").dropFirst().compactMap { Int($0) }
            guard f.count >= 8 else { return nil }
            // user nice system idle iowait irq softirq steal
            let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
            let total = busy + f[3] + f[4]
            guard let s = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8) else { return nil }
            // fields after the parenthesized command name: state is field 3, utime 14, stime 15
            guard let close = s.lastIndex(of: ")") else { return nil }
            let rest = s[s.index(after: close)...].split(separator: " ")
            guard rest.count > 12, let ut = Int(rest[11]), let st = Int(rest[12]) else { return nil }
            return CPUTimes(busy: busy, total: total, own: ut + st)
        }

        /// The fraction of the machine's CPU time that other processes used between `start` and
        /// `self` (0 ... 1).
        public func otherLoad(since start: CPUTimes) -> Double {
            let total = total - start.total
            guard total > 0 else { return 0 }
            let others = (busy - start.busy) - (own - start.own)
            return min(1, max(0, Double(others) / Double(total)))
        }
    }
}
