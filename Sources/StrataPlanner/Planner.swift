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

    enum CodingKeys: String, CodingKey {
        case model, request, batch, prefetchDepth = "prefetch_depth", streamedLayers = "streamed_layers", kvBlocksRAM = "kv_blocks_ram"
        case kvBlocksDisk = "kv_blocks_disk", blockSize = "block_size", ledger, prediction, binding, budgetCurve = "budget_curve"
        case moreRAM = "more_ram"
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
/// A linear layer with `P` parameters over `M` rows costs `t(M) = (alpha + beta * M) * P / P0`
/// where `alpha` (seconds, the weight-read part) and `beta` (seconds per row, the compute part)
/// are fitted by least squares (LAPACKE `dgels`) to the profile's GEMM samples of `P0` parameters.
/// A decode step of batch B at context C: compute `Σ t_layer(B) + t_head(B) + attention`
/// (attention reads `B * C * kvBytesPerToken` at memory bandwidth); streamed layers add
/// `bytes / disk bandwidth`, overlapped with compute when the prefetch depth is at least 1
/// (`max`), added otherwise.
public struct CostModel: Sendable {
    public let profile: HardwareProfile
    public let alpha: Double
    public let beta: Double
    public let referenceParams: Double

    public init(profile: HardwareProfile) {
        self.profile = profile
        let samples = profile.gemm.filter { $0.m > 1 }
        let p0 = Double(samples.first.map { $0.n * $0.k } ?? 1)
        referenceParams = p0
        // least squares of seconds ~ alpha + beta * m, each sample scaled to P0 parameters
        let a = samples.flatMap { [1.0, Double($0.m)] }
        let b = samples.map { $0.seconds * p0 / Double($0.n * $0.k) }
        if samples.count >= 2, let x = BLAS.leastSquares(a: a, rows: samples.count, cols: 2, b: b) {
            alpha = max(0, x[0]); beta = max(1e-15, x[1])
        } else {
            alpha = p0 * 4 / max(1, profile.memoryReadBytesPerSecond); beta = 2 * p0 / 1e11
        }
    }

    /// Seconds for a linear of `params` parameters over `rows` rows (one row: a bandwidth-bound GEMV).
    public func linear(params: Double, bytes: Double, rows: Int) -> Double {
        if rows == 1 { return bytes / profile.memoryReadBytesPerSecond }
        return max((alpha + beta * Double(rows)) * params / referenceParams, bytes / profile.memoryReadBytesPerSecond)
    }

    /// One forward pass of `rows` rows (prompt chunk or decode step) at context `context`.
    public func pass(inv: PlannerInventory, rows: Int, context: Int, logitRows: Int, streamed: Set<Int>, prefetch: Int)
        -> (seconds: Double, compute: Double, memory: Double, disk: Double, diskBytes: Int) {
        var compute = 0.0, memory = 0.0
        for l in 0..<inv.layers {
            let t = linear(params: Double(inv.layerParams[l]), bytes: Double(inv.layerBytes[l]), rows: rows)
            compute += t
            memory += Double(inv.layerBytes[l]) / profile.memoryReadBytesPerSecond
        }
        compute += linear(params: Double(inv.headParams), bytes: Double(inv.headParams * 4), rows: max(1, logitRows))
        // attention: read each sequence's KV, multiply-adds over the context
        let kvRead = Double(rows) * Double(context) * Double(inv.kvBytesPerToken) / profile.memoryReadBytesPerSecond
        // multiply-adds at the fitted compute rate (2 * P0 flops per row take beta seconds)
        compute += kvRead + Double(rows) * Double(context) * Double(inv.attentionMACsPerContextToken) * beta / referenceParams
        let diskBytes = streamed.reduce(0) { $0 + inv.layerBytes[$1] }
        let disk = Double(diskBytes) / profile.diskReadBytesPerSecond
        let seconds = prefetch >= 1 ? max(compute, disk) : compute + disk
        return (seconds, compute, memory, disk, diskBytes)
    }

    public func predict(inv: PlannerInventory, batch: Int, promptTokens: Int, outputTokens: Int, streamed: Set<Int>, prefetch: Int,
                        peakResident: Int, chunk: Int = 512) -> Prediction {
        // prefill: the prompt of each sequence in chunks of up to `chunk` rows
        let totalPrompt = batch * promptTokens
        var prefill = 0.0
        var done = 0
        while done < totalPrompt {
            let rows = min(chunk, totalPrompt - done)
            prefill += pass(inv: inv, rows: rows, context: min(promptTokens, rows), logitRows: 1, streamed: streamed, prefetch: prefetch).seconds
            done += rows
        }
        // first token: the engine packs every admitted prompt into the same passes (up to
        // `chunk` rows each), so the first sequence's prompt finishes after the passes that
        // hold its tokens, each as wide as the batch's prompts allow
        let rowsPerPass = min(chunk, totalPrompt)
        let perSeqPerPass = max(1, min(promptTokens, rowsPerPass / max(1, min(batch, rowsPerPass))))
        var ttft = 0.0
        var d = 0
        while d < promptTokens {
            ttft += pass(inv: inv, rows: rowsPerPass, context: min(promptTokens, d + perSeqPerPass), logitRows: 1, streamed: streamed, prefetch: prefetch).seconds
            d += perSeqPerPass
        }
        let step = pass(inv: inv, rows: batch, context: promptTokens + outputTokens / 2, logitRows: batch, streamed: streamed, prefetch: prefetch)
        let bottleneck = step.disk >= step.compute ? "disk" : (step.memory >= 0.7 * step.compute ? "memory" : "compute")
        let steps = Double(max(0, outputTokens - 1))
        let decodeBytes = step.diskBytes * Int(steps)
        let prefillPasses = (totalPrompt + chunk - 1) / chunk
        return Prediction(prefillTokensPerSecond: prefill > 0 ? Double(totalPrompt) / prefill : 0,
                          decodeTokensPerSecond: 1 / step.seconds,
                          aggregateTokensPerSecond: Double(batch) / step.seconds,
                          timeToFirstTokenSeconds: ttft,
                          decodeStepSeconds: step.seconds, computeSeconds: step.compute, residentReadSeconds: step.memory,
                          diskReadSeconds: step.disk, diskBytesRead: decodeBytes + prefillPasses * step.diskBytes,
                          peakResidentBytes: peakResident, bottleneck: bottleneck)
    }
}

/// The planner: searches batch size, prefetch depth and the resident set under the budget.
public enum Planner {
    /// Plans `request` for `inv` on `profile`. Pure: no I/O.
    public static func plan(inv: PlannerInventory, profile: HardwareProfile, request: PlanRequest, curve: Bool = true) throws -> Plan {
        let cost = CostModel(profile: profile)
        let perBlock = 2 * inv.layers * request.blockSize * (inv.kvHeads * inv.headDim) * 4
        let blocksPerSeq = (request.promptTokens + request.outputTokens + request.blockSize - 1) / request.blockSize + 1
        let batches: [Int] = request.batch.map { [$0] } ?? Array(Set([1, 2, 4, 8, 16, 32, 64, 128, 256].filter { $0 <= request.maxBatch })).sorted()
        let maxLayer = inv.layerBytes.max() ?? 0
        let allLayers = inv.layerBytes.reduce(0, +)
        var best: (plan: Plan, score: Double)? = nil
        var minimum = Int.max
        for b in batches {
            // prefetch 0 leaves the disk idle while a layer computes and its reads unqueued: measured
            // 1.2 GB/s against 1.9 GB/s with prefetch 1 on the same placement (docs/benchmarks.md),
            // a loss the cost model's sum does not capture, so streaming plans read ahead
            for k in 1...max(1, request.maxPrefetch) {
                let kvBytes = b * blocksPerSeq * perBlock
                var left = request.budgetBytes - inv.fixedBytes - inv.otherBytes - kvBytes
                var streamed: [Int] = []
                var staging = 0
                if allLayers > left {
                    staging = min(k + 1, inv.layers) * maxLayer
                    left -= staging
                    var resident = 0
                    // keep the layers resident in order; the rest stream
                    for (i, lb) in inv.layerBytes.enumerated() { if resident + lb <= left { resident += lb } else { streamed.append(i) } }
                }
                let need = inv.fixedBytes + inv.otherBytes + kvBytes + min(staging > 0 ? staging : allLayers, allLayers)
                minimum = min(minimum, inv.fixedBytes + inv.otherBytes + blocksPerSeq * perBlock + min(2 * maxLayer, allLayers))
                if left < 0 || need > request.budgetBytes { continue }
                let residentLayers = allLayers - streamed.reduce(0) { $0 + inv.layerBytes[$1] }
                let peak = inv.fixedBytes + inv.otherBytes + kvBytes + staging + residentLayers
                let pred = cost.predict(inv: inv, batch: b, promptTokens: request.promptTokens, outputTokens: request.outputTokens,
                                        streamed: Set(streamed), prefetch: k, peakResident: peak)
                // latency: one sequence's end-to-end rate, output tokens over (time to first token
                // + the remaining decode steps)
                let score = request.objective == .throughput ? pred.aggregateTokensPerSecond
                    : Double(request.outputTokens) / (pred.timeToFirstTokenSeconds + Double(max(0, request.outputTokens - 1)) * pred.decodeStepSeconds)
                // latency: a larger batch must be clearly better (1%) to win over a smaller one
                let margin = request.objective == .latency ? 1.01 : 1 + 1e-9
                if best == nil || score > best!.score * margin {
                    let binding: String
                    if streamed.isEmpty { binding = b == batches.last ? "batch limit (\(b))" : "none: everything fits in RAM" }
                    else { binding = "RAM budget: \(streamed.count) of \(inv.layers) layers stream from disk" }
                    let ledger = ["runtime and activations": inv.fixedBytes, "embeddings/norms/head": inv.otherBytes, "KV cache (RAM)": kvBytes,
                                  "staging buffers": staging, "resident layers": residentLayers]
                    best = (Plan(model: inv.name, request: request, batch: b, prefetchDepth: streamed.isEmpty ? 0 : k, streamedLayers: streamed,
                                 kvBlocksRAM: b * blocksPerSeq, kvBlocksDisk: 0, blockSize: request.blockSize, ledger: ledger, prediction: pred,
                                 binding: binding, budgetCurve: [], moreRAM: ""), score)
                }
            }
        }
        guard var plan = best?.plan else { throw PlanError.budgetTooSmall(budget: request.budgetBytes, minimum: minimum) }
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
