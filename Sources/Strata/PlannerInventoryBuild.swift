import Foundation
import StrataFormats
import StrataMemory
import StrataModels
import StrataPlanner
import StrataTensor

extension PlannerInventory {
    /// From a model folder's config.json and safetensors headers, or, with `dtype` or in a folder
    /// without `*.safetensors`, from config.json alone (no weights needed: plan a 70B model from
    /// its config); the dtype is then `dtype`, else the config's `torch_dtype` / `dtype`.
    /// The KV cache is counted in `kvType` (checked against the model's head size) and blocks of
    /// `blockSize` tokens (the context the activations are sized for rounds up to one, as the run's).
    public static func build(directory: String, workload: Workload, dtype requested: DType? = nil, maxRows: Int = 512,
                             kvType: DType = .kvDefault, blockSize: Int = 16) throws -> PlannerInventory {
        try build(folder: ModelFolder(path: directory), workload: workload, dtype: requested, maxRows: maxRows, kvType: kvType, blockSize: blockSize)
    }

    public static func build(folder: ModelFolder, workload: Workload, dtype requested: DType? = nil, maxRows: Int = 512,
                             kvType: DType = .kvDefault, blockSize: Int = 16) throws -> PlannerInventory {
        let spec = folder.spec, directory = folder.directory
        try kvType.checkKV(headDim: spec.headDim)
        let dtype = try requested ?? configOnlyDType(folder)
        let h = spec.hiddenSize
        let arch = folder.architecture
        // parameters per layer from the shapes (q, k, v, o, and the MLP), as the architecture counts them
        let perLayer = arch.parametersPerLayer(spec)
        var layerBytes: [Int], otherBytes: Int
        let hasWeights = dtype == nil
        var coldPageCache = 0
        var weightInventory: WeightInventory? = nil
        if hasWeights {
            let inv = try WeightInventory(folder: folder)
            weightInventory = inv
            layerBytes = inv.layerBytes
            otherBytes = inv.otherBytes  // an untied embedding is cold: not resident
            coldPageCache = PlacementRule.coldPageCacheBytes(inv, workload)
        } else {
            // matrices in the dtype; vectors (norms, biases) 16-bit beside 16-bit matrices, f32 beside quantized ones (GGUF)
            let d = dtype!, v = d.isQuantized ? 4 : d.byteSize
            layerBytes = [Int](repeating: d.bytes(elements: perLayer) + arch.vectorsPerLayer(spec) * v, count: spec.layers)
            otherBytes = d.bytes(elements: spec.vocabSize * h) + h * v  // the head (tied: the embedding); an untied embedding is cold
            if !spec.tiedEmbeddings { coldPageCache = min(spec.vocabSize, workload.batch * (workload.promptTokens + workload.outputTokens)) * ((d.bytes(elements: h) + 8191) / 4096 * 4096) }
        }
        // the same lines `TieredRun` charges: runtime overhead and activations
        let maxContext = min(spec.maxPositions, workload.promptTokens + workload.outputTokens + blockSize)  // as TieredRun sizes it
        let weightDType = dtype ?? weightInventory?.matrixScratchDType ?? .f32
        // what the tiered store holds beyond whole layers: the vectors (norms, biases) of streamed
        // layers stay resident, and each staging slot rounds its segments out to 4 KiB pages
        // (O_DIRECT): counted for every layer and the deepest prefetch, so a plan never
        // under-counts what the run charges (a run at the planner's minimum once overshot by 20 KiB)
        let vectorBytes = weightInventory.map { $0.layerVectorBytes.reduce(0, +) }
            ?? arch.vectorsPerLayer(spec) * spec.layers * (dtype.map { $0.isQuantized ? 4 : $0.byteSize } ?? 4)
        let stagingSlack = 4 * 2 * 2 * 4096  // up to 4 slots, two segments of one layer each, a page at each end
        // the run charges these to its ledger's lines (the layers' vectors as resident layers)
        let fixedLines: [LedgerLine: Int] = [
            .runtime: PlacementRule.runtimeOverhead(),
            .activations: PlacementRule.activationBytes(spec: spec, weightDType: weightDType, maxContext: maxContext, maxRows: maxRows),
            .coldRows: coldPageCache, .layerWeights: vectorBytes, .staging: stagingSlack,
        ]
        let fixed = fixedLines.values.reduce(0, +)
        var inv = PlannerInventory(name: (directory as NSString).lastPathComponent, layers: spec.layers, hidden: h, heads: spec.heads,
                                   kvHeads: spec.kvHeads, headDim: spec.headDim, vocab: spec.vocabSize, layerBytes: layerBytes,
                                   layerParams: [Int](repeating: perLayer, count: spec.layers), otherBytes: otherBytes,
                                   headParams: spec.vocabSize * h, kvBytesPerToken: spec.kvBytesPerToken(kvType),
                                   fixedBytes: fixed)
        inv.weightDType = weightDType
        inv.fixedLines = fixedLines
        if let w = weightInventory {
            for l in w.locations where l.layer >= 0 && l.shape.count >= 2 && l.expert == nil && !TieredWeightStore.keptResident(l) {
                inv.layerDTypeBytes[l.dtype.rawValue, default: 0] += l.end - l.begin
            }
        }
        // the head's bytes: `otherBytes` is the head (the embedding, when tied) and the final norm
        inv.headBytes = otherBytes
        if let w = weightInventory, let m = spec.moe, !w.experts.isEmpty {
            let all = w.experts.joined()
            let expertBytes = all.reduce(0) { $0 + $1.bytes } / max(1, all.count)
            let expertParams = 3 * spec.hiddenSize * m.intermediate
            inv.moe = PlannerMoE(experts: m.experts, perToken: m.expertsPerToken, sparseLayers: m.sparseLayers, expertBytes: expertBytes,
                                 expertParams: expertParams, slotBytes: ExpertCache.slotBytes(w.experts), denseLayerBytes: w.denseLayerBytes,
                                 denseLayerParams: w.experts.map { perLayer - $0.count * expertParams })
            inv.moe?.expertDType = all.first?.parts.first?.dtype
            // a benchmark's routing (STRATA_MOE_ROUTING=zipf:S) is predicted as what it is
            if case let .zipf(x) = MoERouting.fromEnvironment { inv.moe?.zipf = x }
        } else if weightInventory == nil, let m = spec.moe {
            // config.json alone: each expert's three matrices in the planned dtype, every one alike
            let expertParams = 3 * spec.hiddenSize * m.intermediate
            let partBytes = weightDType.bytes(elements: spec.hiddenSize * m.intermediate)
            let expertBytes = 3 * partBytes
            let dense = (0..<spec.layers).map { m.sparseLayers[$0] ? max(0, layerBytes[$0] - m.experts * expertBytes) : layerBytes[$0] }
            inv.moe = PlannerMoE(experts: m.experts, perToken: m.expertsPerToken, sparseLayers: m.sparseLayers, expertBytes: expertBytes,
                                 expertParams: expertParams, slotBytes: 3 * ((partBytes + 4095) / 4096 * 4096), denseLayerBytes: dense,
                                 denseLayerParams: (0..<spec.layers).map { m.sparseLayers[$0] ? max(0, perLayer - m.experts * expertParams) : perLayer })
            inv.moe?.expertDType = weightDType
            if case let .zipf(x) = MoERouting.fromEnvironment { inv.moe?.zipf = x }
        }
        // the model's own routing, measured by `strata profile --routing` (a benchmark's forced
        // routing is predicted as what it is instead)
        if inv.moe != nil, MoERouting.fromEnvironment == .model,
           let (hist, file) = RoutingHistograms.load(for: folder, note: { FileHandle.standardError.write(Data("warning: \($0)\n".utf8)) }) {
            inv.moe?.routing = hist.shares
            inv.moe?.routingFile = file
        }
        return inv
    }
}

extension PlannerInventory {
    /// For a folder with no `*.safetensors`: the dtype its config.json declares (nil when the
    /// folder has weights). Throws when it has neither weights nor a declared dtype.
    static func configOnlyDType(_ folder: ModelFolder) throws -> DType? {
        if folder.checkpoint != nil { return nil }
        guard let d = try folder.declaredDType() else {
            throw ConfigError.malformed(file: folder.config.path, field: "torch_dtype",
                                        reason: "missing, and the folder has no *.safetensors to read the dtype from (pass --dtype)")
        }
        return d
    }
}

extension Plan {
    /// The plan as the engine's `Placement`.
    public var placement: Placement {
        var p = Placement(weights: .tiered, streamedLayers: streamedLayers, prefetchDepth: prefetchDepth, kvBlockSize: blockSize,
                          kvBlocksRAM: kvBlocksRAM, kvBlocksDisk: kvBlocksDisk, batchSize: batch, kvType: request.kvType ?? .f32)
        p.expertSlots = expertSlots
        return p
    }
}

extension Prediction {
    /// The keys a run report compares.
    public var reportValues: [String: Double] {
        ["prefill_tokens_per_second": prefillTokensPerSecond, "decode_tokens_per_second": decodeTokensPerSecond,
         "aggregate_tokens_per_second": aggregateTokensPerSecond, "time_to_first_token_seconds": timeToFirstTokenSeconds,
         "disk_bytes_read": Double(diskBytesRead), "peak_resident_bytes": Double(peakResidentBytes)]
            .merging(expertHitRate.map { ["expert_hit_rate": $0] } ?? [:]) { a, _ in a }
    }
}
