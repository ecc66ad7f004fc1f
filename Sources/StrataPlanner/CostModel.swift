import Foundation
import StrataTensor

/// The cost model: pure functions of the inventory, the profile and a placement.
///
/// A layer's linear work with `P` parameters over `M` rows interpolates the profile's samples (a
/// layer's forward pass of `P0` parameters at M = 2 ... 512 rows, less its element-wise work),
/// per parameter; beyond the last sample it grows by `beta` per row, where `alpha + beta * M`
/// is fitted by least squares (LAPACKE `dgels`). One row is a GEMV: the profile's one-row
/// sample (weights cycled through more memory than the caches hold), else bytes / memory
/// bandwidth; quantized weights at most at the one-row kernel's measured rate. Memory figures
/// are the profile's typical (median) round, not its best. Each layer adds its share of
/// attention (reading each sequence's KV at memory bandwidth plus the multiply-adds at the
/// fitted rate), its element-wise work and the pass's fixed overhead per layer.
///
/// Streamed layers are read by one I/O thread, in order, into `prefetch + 1` staging slots: the
/// read of a layer starts when the previous read is done and its slot has been released (the
/// compute of the layer `prefetch + 1` places earlier is done); a layer's compute starts when
/// its read is done and the layer before it is computed. The model runs this pipeline exactly
/// (`pipeline`) over the pass's layers in their order: where the resident layers sit decides how
/// long the disk idles once the slots are full.
public struct CostModel: Sendable {
    public let profile: HardwareProfile
    public let alpha: Double
    public let beta: Double
    public let referenceParams: Double
    /// seconds per parameter of a one-row GEMV (f32 weights), if the profile measured one
    public let gemvSecondsPerParam: Double?
    /// the samples of more than one row as (rows, seconds per parameter), by rows
    public let perParam: [(m: Double, s: Double)]
    /// the layers' weight dtype, for the widening cost (set from the inventory)
    public var dtype: DType? = nil
    /// linears of `Kernels.bf16ProductsMinRows` rows or more over 16-bit or quantized weights run
    /// with bf16 products at the profile's `bf16Gemm` layer-pass samples instead of the f32 ones
    /// (set from the request)
    public var bf16Products = false
    /// one-row linears over quantized weights run with exact f32 activations (the profile's
    /// `oneRowExactBytesPerSecond`), not 8-bit ones (`oneRowBytesPerSecond`) (set from the request)
    public var exactActivations = false

    public init(profile: HardwareProfile) {
        self.profile = profile
        let samples = profile.gemm.filter { $0.m > 1 }.sorted { $0.m < $1.m }
        let p0 = Double(samples.first.map { $0.n * $0.k } ?? 1)
        referenceParams = p0
        perParam = samples.map { (Double($0.m), $0.seconds / Double($0.n * $0.k)) }
        gemvSecondsPerParam = profile.gemm.first { $0.m == 1 }.map { $0.seconds / Double($0.n * $0.k) }
        // least squares of seconds ~ alpha + beta * m, each sample scaled to P0 parameters and
        // weighted by 1 / its time (relative error, so small M counts as much as large M)
        var a: [Double] = [], b: [Double] = []
        for smp in samples {
            let t: Double = smp.seconds * p0 / Double(smp.n * smp.k)
            a += [1.0 / t, Double(smp.m) / t]
            b.append(1.0)
        }
        if samples.count >= 2, let x = BLAS.leastSquares(a: a, rows: samples.count, cols: 2, b: b) {
            alpha = max(0, x[0]); beta = max(1e-15, x[1])
        } else {
            alpha = p0 * 4 / max(1, profile.typicalMemoryRead); beta = 2 * p0 / 1e11
        }
    }

    /// The layers' bytes by dtype, as fractions (empty: all `dtype`): a one-row linear's bytes are
    /// read at each type's own kernel rate.
    public var dtypeMix: [(DType, Double)] = []

    /// Fractions of `bytes` by dtype name (zero and empty entries dropped).
    public static func mix(_ bytes: [String: Double]) -> [(DType, Double)] {
        let total = bytes.values.reduce(0, +)
        guard total > 0 else { return [] }
        return bytes.compactMap { k, v in DType(rawValue: k).flatMap { v > 0 ? ($0, v / total) : nil } }.sorted { $0.0.rawValue < $1.0.rawValue }
    }

    /// The one-row kernel's measured rate for a quantized `d` (bytes of weights per second); a type
    /// the profile has no figure for (measured before Strata read it) at the slowest measured one.
    func oneRowRate(_ d: DType) -> Double? {
        guard d.isQuantized, let rates = exactActivations ? profile.oneRowExactBytesPerSecond : profile.oneRowBytesPerSecond else { return nil }
        if let r = rates[d.rawValue], r > 0 { return r }
        return rates.values.filter { $0 > 0 }.min()
    }

    /// Seconds for a linear of `params` parameters over `rows` rows (one row: a bandwidth-bound GEMV).
    public func linear(params: Double, bytes: Double, rows: Int) -> Double {
        let stream = bytes / profile.typicalMemoryRead
        if rows == 1, dtypeMix.count > 1 {
            // each type's share of the bytes at its kernel's rate or memory's, whichever is slower
            let mem = profile.typicalMemoryRead
            return dtypeMix.reduce(0) { $0 + $1.1 * bytes / min(oneRowRate($1.0) ?? mem, mem) }
        }
        if rows == 1 {
            // quantized weights: the one-row kernel's own measured rate, where it is below memory's
            if let d = dtype, let r = oneRowRate(d) { return max(stream, bytes / r) }
            // the measured GEMV rate is for f32 weights: scale by the bytes each parameter takes
            if let g = gemvSecondsPerParam { return max(stream, g * params * (bytes / max(1, params)) / 4) }
            return stream
        }
        let d = dtype ?? .f32
        if bf16Products, d != .f32, rows >= Kernels.bf16ProductsMinRows(dtype: d), let s = bf16SecondsPerParam(rows: rows) {
            // the bf16-product GEMM: 16-bit weights used in place or rounded inside it; quantized
            // weights first dequantized band by band, once per pass
            let dequant = d.isQuantized ? (profile.dequantPerSecond?[d.rawValue]).map { params / $0 } ?? 0 : 0
            return max(s * params, stream) + dequant
        }
        // up to Kernels.maxRows rows the few-row kernel widens 16-bit weights in registers; beyond,
        // the engine widens them into a scratch before OpenBLAS's sgemm
        let widen = rows > Kernels.maxRows(dtype: dtype ?? .f32) ? widenSeconds(params: params) : 0
        return max(gemmSecondsPerParam(rows: rows) * params, stream) + widen
    }

    /// Seconds per parameter of the bf16-product GEMM over `rows` rows, from the profile's
    /// `bf16Gemm` samples: linear between them, proportional to the rows outside them (nil: none).
    public func bf16SecondsPerParam(rows: Int) -> Double? {
        guard let samples = profile.bf16Gemm?.filter({ $0.seconds > 0 }).sorted(by: { $0.m < $1.m }), let first = samples.first,
              let last = samples.last else { return nil }
        let per = { (s: HardwareProfile.GemmSample) in s.seconds / Double(s.n * s.k) }
        let m = Double(rows)
        if rows <= first.m { return per(first) * m / Double(first.m) }
        if rows >= last.m { return per(last) * m / Double(last.m) }
        for (a, b) in zip(samples, samples.dropFirst()) where rows <= b.m {
            let f = (m - Double(a.m)) / Double(b.m - a.m)
            return per(a) + f * (per(b) - per(a))
        }
        return nil
    }

    /// 16-bit weights before a GEMM of more rows than the few-row kernel takes: the engine widens
    /// them to f32 band by band on one thread (`WeightMatrix`), a cost on top of the GEMM.
    public func widenSeconds(params: Double) -> Double {
        switch dtype {
        case .bf16: return profile.widenBF16PerSecond.map { params / $0 } ?? 0
        case .f16: return profile.widenF16PerSecond.map { params / $0 } ?? 0
        default: return 0
        }
    }

    /// Seconds per parameter of a GEMM over `rows` rows: linear interpolation between the
    /// profile's samples (small-M GEMM is not linear in M: the samples at M = 2 ... 16 cost
    /// nearly the same), the least-squares line beyond them.
    public func gemmSecondsPerParam(rows: Int) -> Double {
        let m = Double(rows)
        if let hi = perParam.firstIndex(where: { $0.m >= m }) {
            if perParam[hi].m == m || hi == 0 { return perParam[hi].s }
            let (m0, s0) = perParam[hi - 1], (m1, s1) = perParam[hi]
            return s0 + (s1 - s0) * (m - m0) / (m1 - m0)
        }
        guard let last = perParam.last else { return (alpha + beta * m) / referenceParams }
        // beyond the last sample: its time plus the fitted per-row slope
        return last.s + beta / referenceParams * (m - last.m)
    }

    /// Seconds to read `bytes` of streamed weights from disk.
    public func diskSeconds(_ bytes: Int) -> Double { Double(bytes) / profile.diskReadBytesPerSecond }

    /// The streaming pipeline: `compute[l]` seconds per layer in pass order, `read[l]` seconds
    /// to read it (nil: resident), `tail` seconds after the last layer (head, sampling),
    /// `slots` staging slots. Runs `passes` passes back to back, the I/O thread starting
    /// with the first; returns the end time of each pass.
    ///
    /// Contention: while a read is in flight compute runs at `computeFactor` of its speed, and
    /// while compute runs a read proceeds at `readFactor` of its speed (the guest kernel's I/O
    /// path takes CPU from the cores that compute; 1 and 1: no contention). The simulation
    /// advances from event to event with those rates.
    public static func pipeline(compute: [Double], read: [Double?], tail: Double, slots: Int, passes: Int,
                                computeFactor: Double = 1, readFactor: Double = 1) -> [Double] {
        let streamed = read.indices.filter { read[$0] != nil }
        let n = streamed.count
        let totalReads = n * passes
        let tasksPerPass = compute.count + 1
        var ends: [Double] = []
        var t = 0.0
        // compute side: task index over all passes (layers, then the tail), its remaining work
        var task = 0, taskLeft = compute.first ?? tail
        var streamedDone = 0      // streamed layers computed (their slots released)
        // read side: next read, its remaining work
        var readsDone = 0, readLeft = n > 0 ? read[streamed[0]]! : 0
        let cf = max(1e-3, computeFactor), rf = max(1e-3, readFactor)
        func layerOf(_ task: Int) -> Int { task % tasksPerPass }
        while task < tasksPerPass * passes {
            let l = layerOf(task)
            let isStreamed = l < compute.count && read[l] != nil
            let computeActive = !isStreamed || readsDone > streamedDone
            let readActive = readsDone < totalReads && readsDone < streamedDone + slots
            // a zero-length task completes at once
            if computeActive && taskLeft <= 0 {
                if isStreamed { streamedDone += 1 }
                if l == compute.count { ends.append(t) }
                task += 1
                if task < tasksPerPass * passes { let m = layerOf(task); taskLeft = m < compute.count ? compute[m] : tail }
                continue
            }
            if readActive && readLeft <= 0 {
                readsDone += 1
                if readsDone < totalReads { readLeft = read[streamed[readsDone % n]]! }
                continue
            }
            let cRate = computeActive ? (readActive ? cf : 1) : 0
            let rRate = readActive ? (computeActive ? rf : 1) : 0
            var dt = Double.infinity
            if cRate > 0 { dt = min(dt, taskLeft / cRate) }
            if rRate > 0 { dt = min(dt, readLeft / rRate) }
            if !dt.isFinite { break }  // nothing can run (cannot happen with slots >= 1)
            t += dt
            if cRate > 0 { taskLeft -= dt * cRate; if taskLeft < 1e-12 { taskLeft = 0 } }
            if rRate > 0 { readLeft -= dt * rRate; if readLeft < 1e-12 { readLeft = 0 } }
        }
        return ends
    }

    /// One forward pass of `rows` rows (prompt chunk or decode step) at context `context`.
    /// `steady`: a pass among many (decode: the I/O thread has been reading ahead); else the
    /// first pass after loading, with the slots empty.
    public func pass(inv: PlannerInventory, rows: Int, context: Int, logitRows: Int, streamed: Set<Int>, prefetch: Int, steady: Bool = true)
        -> (seconds: Double, compute: Double, memory: Double, disk: Double, diskBytes: Int) {
        // attention: read each sequence's KV, multiply-adds over the context, shared by the layers
        let kvRead = Double(rows) * Double(context) * Double(inv.kvBytesPerToken) / profile.typicalMemoryRead
        let attention = kvRead + Double(rows) * Double(context) * Double(inv.attentionMACsPerContextToken) * beta / referenceParams
        // element-wise work per layer, scaled from the profile's hidden size of 2048, and the
        // pass's fixed overhead per layer
        let elementwise = Double(rows) * (profile.elementwiseSecondsPerRow ?? 0) * Double(inv.hidden) / 2048
        let overhead = profile.passOverheadPerLayer ?? 0
        var perLayer: [Double] = []
        var memory = 0.0
        for l in 0..<inv.layers {
            perLayer.append(linear(params: Double(inv.layerParams[l]), bytes: Double(inv.layerBytes[l]), rows: rows) + attention / Double(inv.layers)
                            + elementwise + overhead)
            memory += Double(inv.layerBytes[l]) / profile.typicalMemoryRead
        }
        let head = linear(params: Double(inv.headParams), bytes: Double(inv.headBytes ?? inv.headParams * 4), rows: max(1, logitRows))
        let compute = perLayer.reduce(0, +) + head
        let diskBytes = streamed.reduce(0) { $0 + inv.layerBytes[$1] }
        let disk = diskSeconds(diskBytes)
        if streamed.isEmpty { return (compute, compute, memory, 0, 0) }
        let reads: [Double?] = (0..<inv.layers).map { streamed.contains($0) ? diskSeconds(inv.layerBytes[$0]) : nil }
        let ends = CostModel.pipeline(compute: perLayer, read: reads, tail: head, slots: max(1, prefetch + 1), passes: steady ? 3 : 1,
                                      computeFactor: profile.computeFactorWhileReading ?? 1, readFactor: profile.readFactorWhileComputing ?? 1)
        let seconds = steady ? ends[2] - ends[1] : ends[0]
        return (seconds, compute, memory, disk, diskBytes)
    }

    public func predict(inv: PlannerInventory, batch: Int, promptTokens: Int, outputTokens: Int, streamed: Set<Int>, prefetch: Int,
                        peakResident: Int, chunk: Int = 512, promptChunk: Int = 256) -> Prediction {
        // prefill as the batch engine schedules it: each pass takes up to `chunk` rows, first one
        // decode row per sequence whose prompt is done, then prompt pieces of up to `promptChunk`
        // rows per sequence in arrival order. The first pass starts with the staging slots empty.
        let totalPrompt = batch * promptTokens
        var left = [Int](repeating: promptTokens, count: batch)
        var prefill = 0.0, ttft = 0.0
        var passes = 0
        while left.contains(where: { $0 > 0 }) {
            var budget = chunk - min(chunk, left.filter { $0 == 0 }.count)
            var rows = chunk - budget
            var logitRows = rows
            for i in left.indices where left[i] > 0 && budget > 0 {
                let n = min(left[i], promptChunk, budget)
                left[i] -= n; budget -= n; rows += n
                if left[i] == 0 { logitRows += 1 }
            }
            prefill += pass(inv: inv, rows: rows, context: promptTokens, logitRows: logitRows, streamed: streamed, prefetch: prefetch,
                            steady: passes > 0).seconds
            passes += 1
            if left[0] == 0 && ttft == 0 { ttft = prefill }
        }
        let step = pass(inv: inv, rows: batch, context: promptTokens + outputTokens / 2, logitRows: batch, streamed: streamed, prefetch: prefetch)
        let bottleneck = step.disk >= step.compute ? "disk" : (step.memory >= 0.7 * step.compute ? "memory" : "compute")
        let steps = Double(max(0, outputTokens - 1))
        let decodeBytes = step.diskBytes * Int(steps)
        return Prediction(prefillTokensPerSecond: prefill > 0 ? Double(totalPrompt) / prefill : 0,
                          decodeTokensPerSecond: 1 / step.seconds,
                          // end to end, as a run measures it: every output token over prefill and decode
                          aggregateTokensPerSecond: Double(batch * max(1, outputTokens)) / (prefill + steps * step.seconds),
                          timeToFirstTokenSeconds: ttft,
                          decodeStepSeconds: step.seconds, computeSeconds: step.compute, residentReadSeconds: step.memory,
                          diskReadSeconds: step.disk, diskBytesRead: decodeBytes + passes * step.diskBytes,
                          peakResidentBytes: peakResident, bottleneck: bottleneck)
    }
}
