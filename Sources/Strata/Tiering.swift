import Foundation
import StrataFormats
import StrataMemory
import StrataModels
import StrataTensor

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
        let allInv = try WeightInventory(folder: folder)
        // a pipeline stage (Pipeline.current): only this rank's layers are placed, loaded and given K/V;
        // a later stage places for the workload and KV pool the first stage chose
        let pipeline = Pipelines.current
        let stage = try pipeline?.layers(allInv)
        var weights = weights, prefetchDepth = prefetchDepth, blockSize = blockSize, kvBlocks = kvBlocks, kvType = kvType
        var agreed: StageSetup? = nil
        if let pipeline, pipeline.rank > 0 {
            let s = try pipeline.agree(nil)
            agreed = s
            workload = s.workload; weights = s.weights; prefetchDepth = s.prefetchDepth; blockSize = s.blockSize
            kvBlocks = s.kvBlocks; kvType = s.kvType
        }
        if pipeline != nil && swap != nil { throw PipelineError.notSupported("KV swap to disk (--kv-disk) is not supported across ranks") }
        let inv = stage.map { allInv.keeping(layers: $0) } ?? allInv
        let kvLayers = stage?.count ?? spec.layers
        // expert shards: every rank's range of every layer's experts, all in RAM
        let shards = try pipeline?.expertShards(allInv)
        if shards != nil { weights = .tiered }
        let ledger = Ledger(budget: budget)
        self.ledger = ledger
        self.workload = workload
        // the fixed lines: runtime and activations (charged once the placement is known to fit)
        let overhead = PlacementRule.runtimeOverhead()
        let maxContext = min(spec.maxPositions, workload.promptTokens + workload.outputTokens + blockSize)
        let weightDType = inv.matrixScratchDType
        let activations = PlacementRule.activationBytes(spec: spec, weightDType: weightDType, maxContext: maxContext)
        var p: Placement
        if let given, pipeline == nil {  // a stage places its own layers by the rule (a plan is for one process)
            try given.validate(layers: spec.layers, headDim: spec.headDim)
            p = given
        } else if let budget, shards == nil {
            try kvType.checkKV(headDim: spec.headDim)
            p = try PlacementRule.place(inventory: inv, spec: spec, fixed: overhead + activations + PlacementRule.coldPageCacheBytes(inv, workload), budget: budget, workload: workload,
                                        blockSize: blockSize, prefetchDepth: prefetchDepth, kvBlocks: kvBlocks, kvType: kvType, kvLayers: kvLayers)
        } else {
            try kvType.checkKV(headDim: spec.headDim)
            p = Placement(weights: .tiered, streamedLayers: [], prefetchDepth: prefetchDepth, kvBlockSize: blockSize,
                          kvBlocksRAM: kvBlocks ?? PlacementRule.kvBlocks(workload, blockSize: blockSize), kvBlocksDisk: 0, batchSize: workload.batch,
                          kvType: kvType)
        }
        p.weights = pipeline != nil ? weights : given?.weights ?? weights
        if let swap { p.kvBlocksDisk = swap.slotCount }
        if let pipeline {
            if let agreed, p.kvBlocksRAM != agreed.kvBlocks || p.kvBlockSize != agreed.blockSize {
                throw PipelineError.kvPoolDiffers(rank: pipeline.rank, budget: budget, blocks: p.kvBlocksRAM, wanted: agreed.kvBlocks)
            }
            if agreed == nil {
                _ = try pipeline.agree(StageSetup(kvBlocks: p.kvBlocksRAM, blockSize: p.kvBlockSize, kvType: p.kvType, workload: workload,
                                                  weights: p.weights, prefetchDepth: p.prefetchDepth))
            }
        }
        placement = p
        try ledger.charge(.runtime, overhead)
        try ledger.charge(.activations, activations)
        let perBlock = PagedKVCache.bytesPerBlock(layers: kvLayers, kvDim: spec.kvDim, blockSize: p.kvBlockSize, type: p.kvType)
        try ledger.charge(.kv, p.kvBlocksRAM * perBlock)
        let elsewhere = stage.map { s in Set((0..<spec.layers).filter { !s.contains($0) }) } ?? []
        switch p.weights {
        case .tiered:
            // the cold embedding's rows pass through the page cache: a row per token
            try ledger.charge(.coldRows, PlacementRule.coldPageCacheBytes(inv, workload))
            // a mixture's experts through the expert cache when the placement gives it slots
            let experts = p.expertSlots > 0 && !inv.experts.isEmpty && shards == nil ? try ExpertCache(experts: inv.experts, slots: p.expertSlots, ledger: ledger,
                                policy: .chosen(slots: p.expertSlots, workingSet: (spec.moe?.expertsPerToken ?? 1) * inv.experts.filter { !$0.isEmpty }.count)) : nil
            store = try TieredWeightStore(locations: allInv.locations, streamed: Set(p.streamedLayers), prefetchDepth: p.prefetchDepth,
                                          ledger: ledger, location: directory, cold: inv.coldNames, experts: experts, elsewhere: elsewhere, shards: shards)
        case .mmap:
            // mapped pages are not RAM the ledger controls; they are counted as the kernel maps them (peak RSS)
            store = MappedWeightStore(checkpoint: try folder.requireCheckpoint())
        }
        var model = try folder.load(store: store)
        if let pipeline, let stage { model = try pipeline.wrap(model, layers: stage) }
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
        let experts = (store as? TieredWeightStore)?.expertCache?.stats
        let generated = outs.reduce(0) { $0 + $1.ids.count }
        // per sequence: one token per decode step. (Aggregate decode tokens / s over the batch
        // size undercounts when sequences finish at different steps: a batch of 16 whose first 8
        // finish early runs its last steps with 8 rows.)
        var m = Measured(
            prefillTokensPerSecond: st.prefillSeconds > 0 ? Double(st.promptTokensComputed) / st.prefillSeconds : 0,
            decodeTokensPerSecond: st.decodeOnlySeconds > 0 ? Double(st.decodeOnlySteps) / st.decodeOnlySeconds : 0,
            aggregateTokensPerSecond: wall > 0 ? Double(generated) / wall : 0,
            timeToFirstTokenSeconds: st.firstTokenSeconds,
            diskBytesRead: io.bytesRead + st.swapBytesRead + (experts?.bytesRead ?? 0),
            diskReadBytesPerSecond: io.readSeconds + (experts?.readSeconds ?? 0) > 0
                ? Double(io.bytesRead + (experts?.bytesRead ?? 0)) / (io.readSeconds + (experts?.readSeconds ?? 0)) : 0,
            computeSeconds: max(0, wall - io.waitSeconds),
            ioWaitSeconds: io.waitSeconds,
            peakResidentBytes: ledger.peak, peakResidentLines: LedgerLine.named(ledger.peakLines),
            peakRSSBytes: ProcessMemory.read().peak,
            kvBlocksSwapped: st.blocksSwappedOut + st.blocksSwappedIn,
            wallSeconds: wall, promptTokens: st.promptTokensComputed, generatedTokens: generated)
        if let experts {
            m.expertCache = experts
            m.expertHitRate = experts.hitRate
            m.expertLayerHitRates = experts.layerHitRates
        }
        if st.decodeOnlySteps > 0 {
            m.decodeStepSeconds = st.decodeOnlySeconds / Double(st.decodeOnlySteps)
            m.decodeRowsPerStep = Double(st.decodeOnlyTokens) / Double(st.decodeOnlySteps)
        }
        return (outs, RunReport(model: loaded.directory, ramBudgetBytes: ledger.budget, workload: workload, placement: placement, measured: m))
    }

    public func shutdown() { (store as? TieredWeightStore)?.shutdown() }
}
