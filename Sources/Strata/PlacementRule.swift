import Foundation
import StrataFormats
import StrataMemory
import StrataModels
import StrataTensor

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
                             blockSize: Int = 16, prefetchDepth: Int = 1, kvBlocks: Int? = nil, kvType: DType = .kvDefault,
                             kvLayers: Int? = nil) throws -> Placement {
        // K/V of every layer, or of a pipeline stage's (`kvLayers`)
        let perBlock = PagedKVCache.bytesPerBlock(layers: kvLayers ?? spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: kvType)
        let wantBlocks = kvBlocks ?? kvBlocksFor(workload, blockSize: blockSize)
        let minBlocks = (workload.promptTokens + workload.outputTokens + blockSize - 1) / blockSize + 1
        // a mixture whose experts do not all fit reads them through the expert cache: then the
        // layers stream (or stay) without their experts, and at least one token's experts fit
        let all = inv.layerBytes.reduce(0, +)
        let roomForAll = budget - fixed - inv.otherBytes - minBlocks * perBlock
        let expertCache = spec.moe != nil && !inv.experts.isEmpty && all > roomForAll
        // what a layer streams through a staging slot: its matrices (its vectors stay resident,
        // counted once for every layer; with the expert cache, its experts go through the slots)
        let vectors = inv.layerVectorBytes.reduce(0, +)
        let layerBytes = zip(expertCache ? inv.denseLayerBytes : inv.layerBytes, inv.layerVectorBytes).map { $0 - $1 }
        let slotBytes = expertCache ? ExpertCache.slotBytes(inv.experts) : 0
        let minSlots = expertCache ? spec.moe!.expertsPerToken : 0
        let layersTotal = layerBytes.reduce(0, +)
        // a slot holds a layer's matrices as the store lays them out (4 KiB-aligned runs of the file)
        let maxLayer = TieredWeightStore.stagingBytes(inv.locations, layers: layerBytes.count, expertCache: expertCache).max() ?? 0
        let staging = min(prefetchDepth + 1, layerBytes.count) * maxLayer
        let minimum = fixed + inv.otherBytes + vectors + min(staging, layersTotal) + minSlots * slotBytes + minBlocks * perBlock
        if budget < minimum {
            throw BudgetError.tooSmall(budget: budget, minimum: minimum, detail:
                "runtime and activations \(formatBytes(fixed)), embeddings/norms/head \(formatBytes(inv.otherBytes)), "
                + "the layers' norms and biases \(formatBytes(vectors)), "
                + "staging for one streamed layer plus \(prefetchDepth) prefetched \(formatBytes(staging)), "
                + (expertCache ? "\(minSlots) expert slots (one token's experts) \(formatBytes(minSlots * slotBytes)), " : "")
                + "KV (\(kvType.rawValue)) for one sequence \(formatBytes(minBlocks * perBlock))")
        }
        var left = budget - fixed - inv.otherBytes - vectors
        // KV: as the workload wants, but never so much that weights cannot stream
        let kvRAM = max(minBlocks, min(wantBlocks, (left - min(staging, layersTotal) - minSlots * slotBytes) / perBlock))
        left -= kvRAM * perBlock
        var streamed: [Int] = []
        var slots = 0
        if expertCache {
            // the dense part resident when it fits beside one token's experts, else streamed
            // layer by layer; every byte left becomes expert slots (no more than there are experts)
            if layersTotal + minSlots * slotBytes > left {
                left -= staging
                var resident = 0
                for (i, b) in layerBytes.enumerated() {
                    if resident + b + minSlots * slotBytes <= left { resident += b } else { streamed.append(i) }
                }
                left -= resident
            } else {
                left -= layersTotal
            }
            slots = max(minSlots, min(inv.experts.reduce(0) { $0 + $1.count }, left / slotBytes))
        } else if layersTotal > left {
            left -= staging
            var resident = 0
            for (i, b) in layerBytes.enumerated() {
                if resident + b <= left { resident += b } else { streamed.append(i) }
            }
        }
        var p = Placement(weights: .tiered, streamedLayers: streamed, prefetchDepth: prefetchDepth, kvBlockSize: blockSize,
                          kvBlocksRAM: kvRAM, kvBlocksDisk: 0, batchSize: workload.batch, kvType: kvType)
        p.expertSlots = slots
        return p
    }

    static func kvBlocksFor(_ w: Workload, blockSize: Int) -> Int { kvBlocks(w, blockSize: blockSize) }
}
