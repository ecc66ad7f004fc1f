import Foundation
import StrataFormats
import StrataMemory
import StrataModels
import StrataTensor

/// Which weights are resident and which streamed, how many KV blocks live in each tier, the
/// batch size and the prefetch depth. Written and read as JSON (`--placement FILE`).
public struct Placement: Codable, Sendable, Equatable {
    public enum Weights: String, Codable, Sendable {
        /// resident tensors loaded into RAM, streamed layers read with large reads into staging
        case tiered
        /// every tensor a view of the mmap'd file (the llama.cpp way); the page cache decides
        case mmap
    }
    public var weights: Weights
    /// Layers read from disk on every pass (all others, and non-layer tensors, are resident).
    public var streamedLayers: [Int]
    public var prefetchDepth: Int
    public var kvBlockSize: Int
    public var kvBlocksRAM: Int
    public var kvBlocksDisk: Int
    public var batchSize: Int
    /// What the KV cache stores keys and values as (`DType.kvTypes`).
    public var kvType: DType

    enum CodingKeys: String, CodingKey {
        case weights, streamedLayers = "streamed_layers", prefetchDepth = "prefetch_depth", kvBlockSize = "kv_block_size"
        case kvBlocksRAM = "kv_blocks_ram", kvBlocksDisk = "kv_blocks_disk", batchSize = "batch_size", kvType = "kv_type"
    }

    public init(weights: Weights, streamedLayers: [Int], prefetchDepth: Int, kvBlockSize: Int, kvBlocksRAM: Int, kvBlocksDisk: Int, batchSize: Int,
                kvType: DType) {
        self.weights = weights; self.streamedLayers = streamedLayers; self.prefetchDepth = prefetchDepth; self.kvBlockSize = kvBlockSize
        self.kvBlocksRAM = kvBlocksRAM; self.kvBlocksDisk = kvBlocksDisk; self.batchSize = batchSize; self.kvType = kvType
    }

    /// Decodes a saved placement; one saved before KV types existed holds an f32 cache (what its
    /// blocks were counted in).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        weights = try c.decode(Weights.self, forKey: .weights)
        streamedLayers = try c.decode([Int].self, forKey: .streamedLayers)
        prefetchDepth = try c.decode(Int.self, forKey: .prefetchDepth)
        kvBlockSize = try c.decode(Int.self, forKey: .kvBlockSize)
        kvBlocksRAM = try c.decode(Int.self, forKey: .kvBlocksRAM)
        kvBlocksDisk = try c.decode(Int.self, forKey: .kvBlocksDisk)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        kvType = try c.decodeIfPresent(DType.self, forKey: .kvType) ?? .f32
    }

    /// Checks a placement read from a file (a saved placement or plan) against the model:
    /// every number within what can run, streamed layers that exist, none twice, a KV type that
    /// holds its heads.
    public func validate(layers: Int, headDim: Int) throws {
        func bad(_ f: String, _ r: String) -> PlacementError { PlacementError.invalid(field: f, reason: r) }
        do { try kvType.checkKV(headDim: headDim) } catch { throw bad("kv_type", "\(error)") }
        if !(0...64).contains(prefetchDepth) { throw bad("prefetch_depth", "must be in 0...64, got \(prefetchDepth)") }
        if !(1...1024).contains(kvBlockSize) { throw bad("kv_block_size", "must be in 1...1024, got \(kvBlockSize)") }
        if !(1...(1 << 24)).contains(kvBlocksRAM) { throw bad("kv_blocks_ram", "must be in 1...\(1 << 24), got \(kvBlocksRAM)") }
        if !(0...(1 << 24)).contains(kvBlocksDisk) { throw bad("kv_blocks_disk", "must be in 0...\(1 << 24), got \(kvBlocksDisk)") }
        if !(1...4096).contains(batchSize) { throw bad("batch_size", "must be in 1...4096, got \(batchSize)") }
        if let l = streamedLayers.first(where: { $0 < 0 || $0 >= layers }) { throw bad("streamed_layers", "layer \(l) does not exist (the model has \(layers))") }
        if Set(streamedLayers).count != streamedLayers.count { throw bad("streamed_layers", "a layer is listed twice") }
    }
}

public enum PlacementError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalid(field: String, reason: String)
    public var description: String {
        switch self { case let .invalid(f, r): return "placement field \(f): \(r)" }
    }
}

/// The workload a placement is made for.
public struct Workload: Codable, Sendable, Equatable {
    public var batch: Int
    public var promptTokens: Int
    public var outputTokens: Int
    public init(batch: Int, promptTokens: Int, outputTokens: Int) {
        self.batch = batch; self.promptTokens = promptTokens; self.outputTokens = outputTokens
    }
}

/// Bytes of a model folder's tensors, by layer, from the safetensors headers (no weights read).
public struct WeightInventory: Sendable {
    public var locations: [TensorLocation]
    /// bytes of each transformer layer's tensors
    public var layerBytes: [Int]
    /// bytes of tensors outside the layers kept resident (final norm, LM head, a tied embedding)
    public var otherBytes: Int
    /// An untied token embedding: read one row per token through a mapping, never whole.
    public var coldNames: Set<String>
    public var coldBytes: Int
    /// bytes of one row of the cold embedding
    public var coldRowBytes: Int
    public var totalBytes: Int { otherBytes + coldBytes + layerBytes.reduce(0, +) }
    /// The dtype that sizes the forward pass's conversion scratch: the first matrix that is not
    /// f32 (tensors each have their own dtype), f32 when all are.
    public var matrixScratchDType: DType {
        locations.first { $0.shape.count == 2 && $0.dtype != .f32 }?.dtype ?? .f32
    }

    public init(directory: String) throws { try self.init(folder: ModelFolder(path: directory)) }

    /// From the opened folder's headers.
    public init(folder: ModelFolder) throws {
        let arch = folder.architecture, layers = folder.spec.layers
        let ckpt = try folder.requireCheckpoint()
        var locs: [TensorLocation] = []
        var perLayer = [Int](repeating: 0, count: layers)
        var other = 0
        for name in ckpt.tensorNames {
            guard let e = ckpt.entry(name), let dtype = e.dtype, let path = ckpt.path(of: name) else { continue }
            let l = arch.place(of: name)?.layer ?? -1
            let layer = l < layers ? l : -1
            locs.append(TensorLocation(name: name, path: path, begin: e.begin, end: e.end, dtype: dtype, shape: e.shape, layer: layer))
            if layer >= 0 { perLayer[layer] += e.byteCount } else { other += e.byteCount }
        }
        locations = locs
        layerBytes = perLayer
        // the token embedding is cold when the LM head is a separate tensor (not tied to it)
        let coldName = arch.coldEmbedding(in: ckpt.tensorNames)
        let cold = locs.filter { $0.name == coldName }
        coldNames = Set(cold.map { $0.name })
        coldBytes = cold.reduce(0) { $0 + $1.end - $1.begin }
        coldRowBytes = cold.first.map { ($0.end - $0.begin) / max(1, $0.shape.first ?? 1) } ?? 0
        otherBytes = other - coldBytes
    }
}

/// The byte ledger's fixed lines for a model and workload, and the simple placement rule.
public enum PlacementRule {
    /// Bytes the process holds before any model data: the Swift runtime, Foundation, OpenBLAS
    /// (its thread buffers) and the binary, measured as this process's resident set at start,
    /// plus a margin for allocator slack.
    public static func runtimeOverhead() -> Int { measuredOverhead }

    /// Measured once per process, the first time a budget is planned, so every plan of the
    /// process uses the same figure.
    static let measuredOverhead: Int = ProcessMemory.read().rss + (48 << 20)

    /// Activations and attention scratch of a batch engine run: the workspace and the paged
    /// attention's gather and score buffers.
    public static func activationBytes(spec s: ModelSpec, weightDType: DType, maxContext: Int, maxRows: Int = 512) -> Int {
        let attention = 4 * (2 * maxContext * s.kvDim + maxRows * maxContext + Threads.count * s.heads * maxContext)
        return s.workspaceBytes(maxRows: maxRows, weightDType: weightDType) + attention
    }

    /// Page cache a cold embedding causes: one 4 KiB-rounded row per token of the workload.
    public static func coldPageCacheBytes(_ inv: WeightInventory, _ w: Workload) -> Int {
        guard inv.coldRowBytes > 0 else { return 0 }
        let row = (inv.coldRowBytes + 8191) / 4096 * 4096
        return min(inv.coldBytes, w.batch * (w.promptTokens + w.outputTokens) * row)
    }

    /// KV blocks for `workload` (every sequence's prompt and output, plus one spare block each).
    public static func kvBlocks(_ w: Workload, blockSize: Int) -> Int {
        w.batch * ((w.promptTokens + w.outputTokens + blockSize - 1) / blockSize + 1)
    }

    /// The rule before the planner: non-layer tensors resident, the KV pool as the workload
    /// needs, then whole layers resident from the first while the budget lasts; the rest are
    /// streamed through `prefetchDepth + 1` staging slots. Throws `BudgetError.tooSmall` with
    /// the minimum when even one streamed layer at a time does not fit.
    public static func place(inventory inv: WeightInventory, spec: ModelSpec, fixed: Int, budget: Int, workload: Workload,
                             blockSize: Int = 16, prefetchDepth: Int = 1, kvBlocks: Int? = nil, kvType: DType = .kvDefault) throws -> Placement {
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: kvType)
        let wantBlocks = kvBlocks ?? kvBlocksFor(workload, blockSize: blockSize)
        let minBlocks = (workload.promptTokens + workload.outputTokens + blockSize - 1) / blockSize + 1
        let maxLayer = inv.layerBytes.max() ?? 0
        let staging = min(prefetchDepth + 1, inv.layerBytes.count) * maxLayer
        let minimum = fixed + inv.otherBytes + min(staging, inv.layerBytes.reduce(0, +)) + minBlocks * perBlock
        if budget < minimum {
            throw BudgetError.tooSmall(budget: budget, minimum: minimum, detail:
                "runtime and activations \(formatBytes(fixed)), embeddings/norms/head \(formatBytes(inv.otherBytes)), "
                + "staging for one streamed layer plus \(prefetchDepth) prefetched \(formatBytes(staging)), KV (\(kvType.rawValue)) for one sequence \(formatBytes(minBlocks * perBlock))")
        }
        var left = budget - fixed - inv.otherBytes
        // KV: as the workload wants, but never so much that weights cannot stream
        let kvRAM = max(minBlocks, min(wantBlocks, (left - min(staging, inv.layerBytes.reduce(0, +))) / perBlock))
        left -= kvRAM * perBlock
        var streamed: [Int] = []
        if inv.layerBytes.reduce(0, +) > left {
            left -= staging
            var resident = 0
            for (i, b) in inv.layerBytes.enumerated() {
                if resident + b <= left { resident += b } else { streamed.append(i) }
            }
        }
        return Placement(weights: .tiered, streamedLayers: streamed, prefetchDepth: prefetchDepth, kvBlockSize: blockSize,
                         kvBlocksRAM: kvRAM, kvBlocksDisk: 0, batchSize: workload.batch, kvType: kvType)
    }

    static func kvBlocksFor(_ w: Workload, blockSize: Int) -> Int { kvBlocks(w, blockSize: blockSize) }
}

/// What a run measured (the `measured` object of `--report`).
public struct Measured: Codable, Sendable {
    public var prefillTokensPerSecond: Double
    /// per sequence: decode-only steps per second (each running sequence gains a token a step)
    public var decodeTokensPerSecond: Double
    /// mean seconds of a decode-only step, and its mean rows (running sequences)
    public var decodeStepSeconds: Double = 0
    public var decodeRowsPerStep: Double = 0
    public var aggregateTokensPerSecond: Double
    public var timeToFirstTokenSeconds: Double
    public var diskBytesRead: Int
    public var diskReadBytesPerSecond: Double
    public var computeSeconds: Double
    public var ioWaitSeconds: Double
    public var peakResidentBytes: Int
    public var peakResidentLines: [String: Int]
    public var peakRSSBytes: Int
    public var kvBlocksSwapped: Int
    public var wallSeconds: Double
    public var promptTokens: Int
    public var generatedTokens: Int

    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case decodeStepSeconds = "decode_step_seconds", decodeRowsPerStep = "decode_rows_per_step"
        case aggregateTokensPerSecond = "aggregate_tokens_per_second", timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case diskBytesRead = "disk_bytes_read", diskReadBytesPerSecond = "disk_read_bytes_per_second"
        case computeSeconds = "compute_seconds", ioWaitSeconds = "io_wait_seconds", peakResidentBytes = "peak_resident_bytes"
        case peakResidentLines = "peak_resident_lines", peakRSSBytes = "peak_rss_bytes", kvBlocksSwapped = "kv_blocks_swapped"
        case wallSeconds = "wall_seconds", promptTokens = "prompt_tokens", generatedTokens = "generated_tokens"
    }
}

/// The `--report FILE` JSON: what ran, under which budget and placement, and what it measured.
public struct RunReport: Codable, Sendable {
    public var model: String
    public var ramBudgetBytes: Int?
    public var workload: Workload
    public var placement: Placement
    public var measured: Measured
    /// The planner's prediction for this run (same keys as `measured`), when a plan was used.
    public var predicted: [String: Double]?
    /// Relative error (measured - predicted) / predicted of each predicted key.
    public var error: [String: Double]?
    /// The fill-the-budget rule's placement at the same batch, as the planner predicted it
    /// (aggregate tokens/s), when a plan was used.
    public var predictedRuleTokensPerSecond: Double?
    /// The run was stopped by Ctrl-C (SIGINT/SIGTERM): its figures cover what ran until then.
    public var interrupted: Bool? = nil

    enum CodingKeys: String, CodingKey {
        case model, ramBudgetBytes = "ram_budget_bytes", workload, placement, measured, predicted, error
        case predictedRuleTokensPerSecond = "predicted_rule_aggregate_tokens_per_second", interrupted
    }

    /// Fills `predicted` and `error` from a plan's prediction.
    public mutating func compare(with p: [String: Double]) {
        let m: [String: Double] = [
            "prefill_tokens_per_second": measured.prefillTokensPerSecond, "decode_tokens_per_second": measured.decodeTokensPerSecond,
            "aggregate_tokens_per_second": measured.aggregateTokensPerSecond, "time_to_first_token_seconds": measured.timeToFirstTokenSeconds,
            "disk_bytes_read": Double(measured.diskBytesRead), "peak_resident_bytes": Double(measured.peakResidentBytes),
        ]
        predicted = p
        var e: [String: Double] = [:]
        for (k, v) in p { if let mv = m[k], v != 0 { e[k] = (mv - v) / v } }
        error = e
    }
}

/// A model loaded under a RAM budget: ledger, weight store (tiered or mmap), batch engine.
public final class TieredRun: @unchecked Sendable {
    public let loaded: LoadedModel
    public let ledger: Ledger
    public let placement: Placement
    public let store: WeightStore
    public let engine: BatchEngine
    public let workload: Workload

    /// - Parameters:
    ///   - budget: RAM budget in bytes (nil: unlimited, everything resident unless `placement` says otherwise).
    ///   - placement: a saved placement; nil: `PlacementRule.place`.
    public convenience init(directory: String, budget: Int?, workload: Workload, placement given: Placement? = nil,
                            weights: Placement.Weights = .tiered, prefetchDepth: Int = 1, blockSize: Int = 16, kvBlocks: Int? = nil,
                            kvType: DType = .kvDefault, swap: SwapSpace? = nil) throws {
        try self.init(folder: ModelFolder(path: directory), budget: budget, workload: workload, placement: given, weights: weights,
                      prefetchDepth: prefetchDepth, blockSize: blockSize, kvBlocks: kvBlocks, kvType: kvType, swap: swap)
    }

    public init(folder: ModelFolder, budget: Int?, workload: Workload, placement given: Placement? = nil,
                weights: Placement.Weights = .tiered, prefetchDepth: Int = 1, blockSize: Int = 16, kvBlocks: Int? = nil,
                kvType: DType = .kvDefault, swap: SwapSpace? = nil) throws {
        let spec = folder.spec, directory = folder.directory
        // no sequence outgrows the model's context: a workload asking for more is sized to it
        var workload = workload
        workload.promptTokens = min(max(1, workload.promptTokens), spec.maxPositions)
        workload.outputTokens = min(max(1, workload.outputTokens), spec.maxPositions)
        let inv = try WeightInventory(folder: folder)
        let ledger = Ledger(budget: budget)
        self.ledger = ledger
        self.workload = workload
        // the fixed lines: runtime and activations (charged once the placement is known to fit)
        let overhead = PlacementRule.runtimeOverhead()
        let maxContext = min(spec.maxPositions, workload.promptTokens + workload.outputTokens + blockSize)
        let weightDType = inv.matrixScratchDType
        let activations = PlacementRule.activationBytes(spec: spec, weightDType: weightDType, maxContext: maxContext)
        var p: Placement
        if let given {
            try given.validate(layers: spec.layers, headDim: spec.headDim)
            p = given
        } else if let budget {
            try kvType.checkKV(headDim: spec.headDim)
            p = try PlacementRule.place(inventory: inv, spec: spec, fixed: overhead + activations + PlacementRule.coldPageCacheBytes(inv, workload), budget: budget, workload: workload,
                                        blockSize: blockSize, prefetchDepth: prefetchDepth, kvBlocks: kvBlocks, kvType: kvType)
        } else {
            try kvType.checkKV(headDim: spec.headDim)
            p = Placement(weights: .tiered, streamedLayers: [], prefetchDepth: prefetchDepth, kvBlockSize: blockSize,
                          kvBlocksRAM: kvBlocks ?? PlacementRule.kvBlocks(workload, blockSize: blockSize), kvBlocksDisk: 0, batchSize: workload.batch,
                          kvType: kvType)
        }
        p.weights = given?.weights ?? weights
        if let swap { p.kvBlocksDisk = swap.slotCount }
        placement = p
        try ledger.charge(.runtime, overhead)
        try ledger.charge(.activations, activations)
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: p.kvBlockSize, type: p.kvType)
        try ledger.charge(.kv, p.kvBlocksRAM * perBlock)
        switch p.weights {
        case .tiered:
            // the cold embedding's rows pass through the page cache: a row per token
            try ledger.charge(.coldRows, PlacementRule.coldPageCacheBytes(inv, workload))
            store = try TieredWeightStore(locations: inv.locations, streamed: Set(p.streamedLayers), prefetchDepth: p.prefetchDepth,
                                          ledger: ledger, location: directory, cold: inv.coldNames)
        case .mmap:
            // mapped pages are not RAM the ledger controls; they are counted as the kernel maps them (peak RSS)
            store = MappedWeightStore(checkpoint: try folder.requireCheckpoint())
        }
        let model = try folder.load(store: store)
        loaded = try LoadedModel(folder: folder, model: model)
        engine = BatchEngine(loaded: loaded, config: .init(blocks: p.kvBlocksRAM, blockSize: p.kvBlockSize, maxBatch: max(1, p.batchSize), kvType: p.kvType),
                             swap: swap)
    }

    /// Runs `requests` and returns the outputs and the report.
    public func run(_ requests: [GenerationRequest], onToken: (Int, Int, GeneratedToken) -> Void = { _, _, _ in }) throws -> ([RequestOutput], RunReport) {
        let t0 = now()
        let outs = try engine.run(requests, onToken: onToken)
        let wall = now() - t0
        let st = engine.stats
        let io: WeightIOStats = (store as? TieredWeightStore)?.stats ?? WeightIOStats.init()
        let generated = outs.reduce(0) { $0 + $1.ids.count }
        // per sequence: one token per decode step. (Aggregate decode tokens / s over the batch
        // size undercounts when sequences finish at different steps: a batch of 16 whose first 8
        // finish early runs its last steps with 8 rows.)
        var m = Measured(
            prefillTokensPerSecond: st.prefillSeconds > 0 ? Double(st.promptTokensComputed) / st.prefillSeconds : 0,
            decodeTokensPerSecond: st.decodeOnlySeconds > 0 ? Double(st.decodeOnlySteps) / st.decodeOnlySeconds : 0,
            aggregateTokensPerSecond: wall > 0 ? Double(generated) / wall : 0,
            timeToFirstTokenSeconds: st.firstTokenSeconds,
            diskBytesRead: io.bytesRead + st.swapBytesRead,
            diskReadBytesPerSecond: io.readSeconds > 0 ? Double(io.bytesRead) / io.readSeconds : 0,
            computeSeconds: max(0, wall - io.waitSeconds),
            ioWaitSeconds: io.waitSeconds,
            peakResidentBytes: ledger.peak, peakResidentLines: LedgerLine.named(ledger.peakLines),
            peakRSSBytes: ProcessMemory.read().peak,
            kvBlocksSwapped: st.blocksSwappedOut + st.blocksSwappedIn,
            wallSeconds: wall, promptTokens: st.promptTokensComputed, generatedTokens: generated)
        if st.decodeOnlySteps > 0 {
            m.decodeStepSeconds = st.decodeOnlySeconds / Double(st.decodeOnlySteps)
            m.decodeRowsPerStep = Double(st.decodeOnlyTokens) / Double(st.decodeOnlySteps)
        }
        return (outs, RunReport(model: loaded.directory, ramBudgetBytes: ledger.budget, workload: workload, placement: placement, measured: m))
    }

    public func shutdown() { (store as? TieredWeightStore)?.shutdown() }
}
