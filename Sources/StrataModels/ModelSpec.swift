import Foundation
import StrataFormats
import StrataTensor

/// The shape of a decoder-only transformer, as the planner and the engine see it.
public struct ModelSpec: Sendable, Codable, Equatable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case architecture, vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size", layers, heads, kvHeads = "kv_heads", headDim = "head_dim", maxPositions = "max_positions", tiedEmbeddings = "tied_embeddings", bosTokenIDs = "bos_token_i_ds", eosTokenIDs = "eos_token_i_ds", queryBufferWidth = "query_buffer_width", moe }

    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var maxPositions: Int
    public var tiedEmbeddings: Bool
    public var bosTokenIDs: [Int]
    public var eosTokenIDs: [Int]
    /// Columns of the forward pass's query buffer: heads * headDim, or GPT-2's fused q|k|v (3 * hidden).
    public var queryBufferWidth: Int
    /// A mixture of experts' shape (nil: a dense model).
    public var moe: MoEShape? = nil

    /// Width of one token's K (or V) row in one layer: kvHeads * headDim.
    public var kvDim: Int { kvHeads * headDim }
    /// Bytes of K and V for one token across all layers, stored as `type`.
    public func kvBytesPerToken(_ type: DType) -> Int { 2 * layers * type.bytes(elements: kvDim) }
}

/// The routed experts of a mixture-of-experts model: how many per layer, how many each token
/// uses, each one's intermediate size, and which layers are sparse.
public struct MoEShape: Sendable, Codable, Equatable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case experts, expertsPerToken = "experts_per_token", intermediate, sparseLayers = "sparse_layers" }

    public var experts: Int
    public var expertsPerToken: Int
    public var intermediate: Int
    /// Per layer: true where the MLP is the mixture (Qwen3-MoE's `mlp_only_layers` are dense).
    public var sparseLayers: [Bool]
    public init(experts: Int, expertsPerToken: Int, intermediate: Int, sparseLayers: [Bool]) {
        self.experts = experts; self.expertsPerToken = expertsPerToken; self.intermediate = intermediate; self.sparseLayers = sparseLayers
    }

    public func validate(file: String) throws {
        if !(1...4096).contains(experts) {
            throw ConfigError.invalidValue(file: file, field: "num_experts", reason: "must be in 1...4096, got \(experts)")
        }
        if !(1...experts).contains(expertsPerToken) {
            throw ConfigError.invalidValue(file: file, field: "num_experts_per_tok", reason: "must be in 1...\(experts) (num_experts), got \(expertsPerToken)")
        }
        if !(1...(1 << 20)).contains(intermediate) {
            throw ConfigError.invalidValue(file: file, field: "moe_intermediate_size", reason: "must be in 1...\(1 << 20), got \(intermediate)")
        }
    }
}

extension ModelSpec {
    /// Checks the shape read from `file` (config.json or a GGUF's metadata) against what a
    /// machine can hold, so no size computed from it can overflow or ask for petabytes: a
    /// typed error names the field (HF's name).
    public func validate(file: String) throws {
        func check(_ v: Int, _ range: ClosedRange<Int>, _ field: String) throws {
            if !range.contains(v) {
                throw ConfigError.invalidValue(file: file, field: field, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(v)")
            }
        }
        try check(vocabSize, 1...(1 << 24), "vocab_size")
        try check(hiddenSize, 1...(1 << 17), "hidden_size")
        try check(intermediateSize, 1...(1 << 20), "intermediate_size")
        try check(layers, 1...4096, "num_hidden_layers")
        try check(heads, 1...4096, "num_attention_heads")
        try check(kvHeads, 1...heads, "num_key_value_heads")
        try check(headDim, 1...(1 << 14), "head_dim")
        try check(maxPositions, 1...(1 << 24), "max_position_embeddings")
        try check(queryBufferWidth, 1...(1 << 20), "num_attention_heads x head_dim")
        if heads % kvHeads != 0 {
            throw ConfigError.invalidValue(file: file, field: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        if let m = moe { try m.validate(file: file) }
    }

    /// What is odd but runs (transformers runs it too): BOS/EOS ids outside the vocabulary (tiny
    /// test checkpoints carry GPT-2's 50256 over a few hundred tokens): such an EOS never comes.
    public func warnings(file: String) -> [String] {
        (bosTokenIDs + eosTokenIDs).filter { $0 < 0 || $0 >= vocabSize }.map {
            "\(file): bos_token_id/eos_token_id \($0) is outside the vocabulary (0..<\(vocabSize)); it is never generated"
        }
    }

    /// Bytes of the forward pass's buffers for this shape (what `CausalLM.workspaceBytes`
    /// allocates), from the spec alone, so a planner can count them without weights.
    public func workspaceBytes(maxRows: Int = 512, weightDType: DType) -> Int {
        Workspace.bytes(spec: self, maxRows: maxRows, weightDType: weightDType)
    }
}
