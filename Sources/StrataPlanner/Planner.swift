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

/// What the planner knows of a model: from `config.json` and safetensors headers (or
/// `config.json` alone with a dtype). Plain data; built by `Strata`.
public struct PlannerInventory: Codable, Sendable {
    public var name: String
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocab: Int
    /// bytes of each transformer layer's weights (as stored)
    public var layerBytes: [Int]
    /// parameters of each layer (multiply-adds per token)
    public var layerParams: [Int]
    /// embeddings, final norm, LM head: bytes, and the LM head's parameters
    public var otherBytes: Int
    public var headParams: Int
    /// bytes of K and V per token, all layers (f32)
    public var kvBytesPerToken: Int
    /// fixed resident bytes: runtime overhead and activations at the workload's size
    public var fixedBytes: Int
    /// the layers' weight dtype (nil: unknown, no widening cost)
    public var weightDType: DType? = nil

    public init(name: String, layers: Int, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, layerBytes: [Int],
                layerParams: [Int], otherBytes: Int, headParams: Int, kvBytesPerToken: Int, fixedBytes: Int) {
        self.name = name; self.layers = layers; self.hidden = hidden; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.vocab = vocab; self.layerBytes = layerBytes; self.layerParams = layerParams; self.otherBytes = otherBytes
        self.headParams = headParams; self.kvBytesPerToken = kvBytesPerToken; self.fixedBytes = fixedBytes
    }

    public var weightBytes: Int { otherBytes + layerBytes.reduce(0, +) }
    /// Attention multiply-adds per query row per context token (QK^T and PV, all heads).
    public var attentionMACsPerContextToken: Int { 2 * heads * headDim * layers }
}

/// The planner's question.
public struct PlanRequest: Codable, Sendable {
    public enum Objective: String, Codable, Sendable { case throughput, latency }
    public var budgetBytes: Int
    /// nil: the planner chooses
    public var batch: Int?
    public var promptTokens: Int
    public var outputTokens: Int
    public var objective: Objective
    public var blockSize: Int
    public var maxBatch: Int
    public var maxPrefetch: Int
    public init(budgetBytes: Int, batch: Int? = nil, promptTokens: Int, outputTokens: Int, objective: Objective = .throughput,
                blockSize: Int = 16, maxBatch: Int = 64, maxPrefetch: Int = 3) {
        self.budgetBytes = budgetBytes; self.batch = batch; self.promptTokens = promptTokens; self.outputTokens = outputTokens
        self.objective = objective; self.blockSize = blockSize; self.maxBatch = maxBatch; self.maxPrefetch = maxPrefetch
    }
}

/// Times the cost model predicts (seconds and tokens/s), with the terms that make them.
public struct Prediction: Codable, Sendable, Equatable {
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    public var aggregateTokensPerSecond: Double
    public var timeToFirstTokenSeconds: Double
    public var decodeStepSeconds: Double
    /// per decode step
    public var computeSeconds: Double
    public var residentReadSeconds: Double
    public var diskReadSeconds: Double
    public var diskBytesRead: Int
    public var peakResidentBytes: Int
    /// the largest term of a decode step: compute, memory or disk
    public var bottleneck: String

    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case aggregateTokensPerSecond = "aggregate_tokens_per_second", timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case decodeStepSeconds = "decode_step_seconds", computeSeconds = "compute_seconds", residentReadSeconds = "resident_read_seconds"
        case diskReadSeconds = "disk_read_seconds", diskBytesRead = "disk_bytes_read", peakResidentBytes = "peak_resident_bytes"
        case bottleneck
    }
}

/// The planner's answer: a placement with its prediction and the ledger behind it.
public struct Plan: Codable, Sendable {
    public var model: String
    public var request: PlanRequest
    public var batch: Int
    public var prefetchDepth: Int
    public var streamedLayers: [Int]
    public var kvBlocksRAM: Int
    public var kvBlocksDisk: Int
    public var blockSize: Int
    /// ledger lines: bytes
    public var ledger: [String: Int]
    public var prediction: Prediction
    /// which constraint decided the plan
    public var binding: String
    /// predicted aggregate tokens/s with more RAM: (budget bytes, tokens/s)
    public var budgetCurve: [[Double]]
    public var moreRAM: String
    /// the rule's placement at the same batch, predicted by the same model (tokens/s of the
    /// objective: aggregate for throughput, per sequence for latency), and the comparison
    public var ruleTokensPerSecond: Double = 0
    public var versusRule: String = ""

    enum CodingKeys: String, CodingKey {
        case model, request, batch, prefetchDepth = "prefetch_depth", streamedLayers = "streamed_layers", kvBlocksRAM = "kv_blocks_ram"
        case kvBlocksDisk = "kv_blocks_disk", blockSize = "block_size", ledger, prediction, binding, budgetCurve = "budget_curve"
        case moreRAM = "more_ram", ruleTokensPerSecond = "rule_tokens_per_second", versusRule = "versus_rule"
    }
}

extension Plan {
    /// Decodes a saved plan; plans saved before the rule comparison existed decode without it.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        request = try c.decode(PlanRequest.self, forKey: .request)
        batch = try c.decode(Int.self, forKey: .batch)
        prefetchDepth = try c.decode(Int.self, forKey: .prefetchDepth)
        streamedLayers = try c.decode([Int].self, forKey: .streamedLayers)
        kvBlocksRAM = try c.decode(Int.self, forKey: .kvBlocksRAM)
        kvBlocksDisk = try c.decode(Int.self, forKey: .kvBlocksDisk)
        blockSize = try c.decode(Int.self, forKey: .blockSize)
        ledger = try c.decode([String: Int].self, forKey: .ledger)
        prediction = try c.decode(Prediction.self, forKey: .prediction)
        binding = try c.decode(String.self, forKey: .binding)
        budgetCurve = try c.decode([[Double]].self, forKey: .budgetCurve)
        moreRAM = try c.decode(String.self, forKey: .moreRAM)
        ruleTokensPerSecond = try c.decodeIfPresent(Double.self, forKey: .ruleTokensPerSecond) ?? 0
        versusRule = try c.decodeIfPresent(String.self, forKey: .versusRule) ?? ""
    }
}

public enum PlanError: Error, CustomStringConvertible, Equatable, Sendable {
    case budgetTooSmall(budget: Int, minimum: Int)
    public var description: String {
        switch self {
        case let .budgetTooSmall(b, m):
            return "RAM budget \(b) bytes is too small: the smallest plan for this model and workload needs \(m) bytes"
        }
    }
}

/// The cost model: pure functions of the inventory, the profile and a placement.
///
/// A layer's linear work with `P` parameters over `M` rows interpolates the profile's samples (a
/// layer's forward pass of `P0` parameters at M = 2 ... 512 rows, less its element-wise work),
/// per parameter; beyond the last sample it grows by `beta` per row, where `alpha + beta * M`
/// is fitted by least squares (LAPACKE `dgels`). One row is a GEMV: the profile's one-row
/// sample (weights cycled through more memory than the caches hold), else bytes / memory
/// bandwidth. Each layer adds its share of attention (reading each sequence's KV at memory
/// bandwidth plus the multiply-adds at the fitted rate) and its element-wise work.
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
            alpha = p0 * 4 / max(1, profile.memoryReadBytesPerSecond); beta = 2 * p0 / 1e11
        }
    }

    /// Seconds for a linear of `params` parameters over `rows` rows (one row: a bandwidth-bound GEMV).
    public func linear(params: Double, bytes: Double, rows: Int) -> Double {
        let stream = bytes / profile.memoryReadBytesPerSecond
        if rows == 1 {
            // the measured GEMV rate is for f32 weights: scale by the bytes each parameter takes
            if let g = gemvSecondsPerParam { return max(stream, g * params * (bytes / max(1, params)) / 4) }
            return stream
        }
        // up to Kernels.maxRows rows the few-row kernel widens 16-bit weights in registers; beyond,
        // the engine widens them into a scratch before OpenBLAS's sgemm
        let widen = rows > Kernels.maxRows(dtype: dtype ?? .f32) ? widenSeconds(params: params) : 0
        return max(gemmSecondsPerParam(rows: rows) * params, stream) + widen
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
        let kvRead = Double(rows) * Double(context) * Double(inv.kvBytesPerToken) / profile.memoryReadBytesPerSecond
        let attention = kvRead + Double(rows) * Double(context) * Double(inv.attentionMACsPerContextToken) * beta / referenceParams
        // element-wise work per layer, scaled from the profile's hidden size of 2048
        let elementwise = Double(rows) * (profile.elementwiseSecondsPerRow ?? 0) * Double(inv.hidden) / 2048
        var perLayer: [Double] = []
        var memory = 0.0
        for l in 0..<inv.layers {
            perLayer.append(linear(params: Double(inv.layerParams[l]), bytes: Double(inv.layerBytes[l]), rows: rows) + attention / Double(inv.layers)
                            + elementwise)
            memory += Double(inv.layerBytes[l]) / profile.memoryReadBytesPerSecond
        }
        let head = linear(params: Double(inv.headParams), bytes: Double(inv.headParams * 4), rows: max(1, logitRows))
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

/// The planner: searches batch size, prefetch depth and the resident set under the budget.
public enum Planner {
    /// Plans `request` for `inv` on `profile`. Pure: no I/O.
    public static func plan(inv: PlannerInventory, profile: HardwareProfile, request: PlanRequest, curve: Bool = true) throws -> Plan {
        var cost = CostModel(profile: profile)
        cost.dtype = inv.weightDType
        let perBlock = 2 * inv.layers * request.blockSize * (inv.kvHeads * inv.headDim) * 4
        let blocksPerSeq = (request.promptTokens + request.outputTokens + request.blockSize - 1) / request.blockSize + 1
        let batches: [Int] = request.batch.map { [$0] } ?? Array(Set([1, 2, 4, 8, 16, 32, 64, 128, 256].filter { $0 <= request.maxBatch })).sorted()
        let maxLayer = inv.layerBytes.max() ?? 0
        let allLayers = inv.layerBytes.reduce(0, +)
        var best: (plan: Plan, score: Double)? = nil
        // the fill-the-budget rule's placement (first layers resident, prefetch 1) per batch, as predicted
        var rulePrediction: [Int: Prediction] = [:]
        var minimum = Int.max
        for b in batches {
            // prefetch 0 leaves the disk idle while a layer computes and its reads unqueued: measured
            // 1.2 GB/s against 1.9 GB/s with prefetch 1 on the same placement (docs/benchmarks.md),
            // a loss the cost model's sum does not capture, so streaming plans read ahead
            for k in 1...max(1, request.maxPrefetch) {
                let kvBytes = b * blocksPerSeq * perBlock
                var left = request.budgetBytes - inv.fixedBytes - inv.otherBytes - kvBytes
                var staging = 0
                var arrangements: [(name: String, streamed: [Int])] = [("in order", [])]
                if allLayers > left {
                    staging = min(k + 1, inv.layers) * maxLayer
                    left -= staging
                    // the rule: keep the first layers resident while they fit; the rest stream
                    var resident = 0, inOrder: [Int] = []
                    for (i, lb) in inv.layerBytes.enumerated() { if resident + lb <= left { resident += lb } else { inOrder.append(i) } }
                    arrangements = [("in order", inOrder)]
                    // the same number of resident layers spread evenly between the streamed ones:
                    // each resident layer computes while the next streamed one is read, so the
                    // disk does not idle once the slots are full (CostModel.pipeline). Layer 0 stays
                    // resident, so a fresh process's first pass computes while the first read runs
                    let r = inv.layers - inOrder.count
                    if r > 0 && !inOrder.isEmpty {
                        let keep = Set((0..<r).map { min(inv.layers - 1, Int(Double($0) * Double(inv.layers) / Double(r))) })
                        let spread = (0..<inv.layers).filter { !keep.contains($0) }
                        if keep.count == r && allLayers - spread.reduce(0, { $0 + inv.layerBytes[$1] }) <= left {
                            arrangements.append(("spread", spread))
                        }
                    }
                }
                let need = inv.fixedBytes + inv.otherBytes + kvBytes + min(staging > 0 ? staging : allLayers, allLayers)
                minimum = min(minimum, inv.fixedBytes + inv.otherBytes + blocksPerSeq * perBlock + min(2 * maxLayer, allLayers))
                if left < 0 || need > request.budgetBytes { continue }
                for (arrangement, streamed) in arrangements {
                    let residentLayers = allLayers - streamed.reduce(0) { $0 + inv.layerBytes[$1] }
                    let peak = inv.fixedBytes + inv.otherBytes + kvBytes + staging + residentLayers
                    let pred = cost.predict(inv: inv, batch: b, promptTokens: request.promptTokens, outputTokens: request.outputTokens,
                                            streamed: Set(streamed), prefetch: k, peakResident: peak)
                    // latency: one sequence's end-to-end rate, output tokens over (time to first token
                    // + the remaining decode steps)
                    let score = request.objective == .throughput ? pred.aggregateTokensPerSecond
                        : Double(request.outputTokens) / (pred.timeToFirstTokenSeconds + Double(max(0, request.outputTokens - 1)) * pred.decodeStepSeconds)
                    if k == 1 && arrangement == "in order" { rulePrediction[b] = pred }
                    // latency: a larger batch must be clearly better (1%) to win over a smaller one
                    let margin = request.objective == .latency ? 1.01 : 1 + 1e-9
                    if best == nil || score > best!.score * margin {
                        let binding: String
                        if streamed.isEmpty { binding = b == batches.last ? "batch limit (\(b))" : "none: everything fits in RAM" }
                        else { binding = "RAM budget: \(streamed.count) of \(inv.layers) layers stream from disk (resident layers \(arrangement))" }
                        let ledger = ["runtime and activations": inv.fixedBytes, "embeddings/norms/head": inv.otherBytes, "KV cache (RAM)": kvBytes,
                                      "staging buffers": staging, "resident layers": residentLayers]
                        best = (Plan(model: inv.name, request: request, batch: b, prefetchDepth: streamed.isEmpty ? 0 : k, streamedLayers: streamed,
                                     kvBlocksRAM: b * blocksPerSeq, kvBlocksDisk: 0, blockSize: request.blockSize, ledger: ledger, prediction: pred,
                                     binding: binding, budgetCurve: [], moreRAM: ""), score)
                    }
                }
            }
        }
        guard var plan = best?.plan else { throw PlanError.budgetTooSmall(budget: request.budgetBytes, minimum: minimum) }
        if let rule = rulePrediction[plan.batch] {
            plan.ruleTokensPerSecond = request.objective == .throughput ? rule.aggregateTokensPerSecond : rule.decodeTokensPerSecond
            let mine = request.objective == .throughput ? plan.prediction.aggregateTokensPerSecond : plan.prediction.decodeTokensPerSecond
            plan.versusRule = String(format: "the fill-the-budget rule (first layers resident, prefetch 1) at batch %d: %.3f tokens/s predicted; this plan %.3f (%+.1f%%)",
                                     plan.batch, plan.ruleTokensPerSecond, mine, (mine / plan.ruleTokensPerSecond - 1) * 100)
        }
        if curve {
            // predicted tokens/s from a quarter of the model size to everything in RAM
            let full = inv.fixedBytes + inv.otherBytes + allLayers + plan.batch * blocksPerSeq * perBlock
            let lo = max(minimum, inv.weightBytes / 4)
            var points: [[Double]] = []
            for i in 0...8 {
                let bgt = lo + (full - lo) * i / 8
                var r = request
                r.budgetBytes = bgt
                r.batch = plan.batch
                if let p = try? Planner.plan(inv: inv, profile: profile, request: r, curve: false) {
                    points.append([Double(bgt), request.objective == .throughput ? p.prediction.aggregateTokensPerSecond : p.prediction.decodeTokensPerSecond])
                }
            }
            plan.budgetCurve = points
            var more = request
            more.budgetBytes = request.budgetBytes + (1 << 30)
            if let p = try? Planner.plan(inv: inv, profile: profile, request: more, curve: false) {
                plan.moreRAM = String(format: "+1 GiB of RAM: %.2f -> %.2f tokens/s aggregate (%d -> %d layers streamed)",
                                      plan.prediction.aggregateTokensPerSecond, p.prediction.aggregateTokensPerSecond,
                                      plan.streamedLayers.count, p.streamedLayers.count)
            }
        }
        return plan
    }
}
