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
    /// A mixture of experts: slots of the expert cache its routed experts are read through (0:
    /// the experts are tensors of their layers, resident or streamed with them).
    public var expertSlots: Int = 0

    enum CodingKeys: String, CodingKey {
        case weights, streamedLayers = "streamed_layers", prefetchDepth = "prefetch_depth", kvBlockSize = "kv_block_size"
        case kvBlocksRAM = "kv_blocks_ram", kvBlocksDisk = "kv_blocks_disk", batchSize = "batch_size", kvType = "kv_type"
        case expertSlots = "expert_slots"
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
        expertSlots = try c.decodeIfPresent(Int.self, forKey: .expertSlots) ?? 0
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
        if !(0...(1 << 20)).contains(expertSlots) { throw bad("expert_slots", "must be in 0...\(1 << 20), got \(expertSlots)") }
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
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case batch, promptTokens = "prompt_tokens", outputTokens = "output_tokens" }

    public var batch: Int
    public var promptTokens: Int
    public var outputTokens: Int
    public init(batch: Int, promptTokens: Int, outputTokens: Int) {
        self.batch = batch; self.promptTokens = promptTokens; self.outputTokens = outputTokens
    }
}
