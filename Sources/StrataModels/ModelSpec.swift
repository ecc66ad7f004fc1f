import Foundation
import StrataFormats
import StrataTensor

/// The shape of a decoder-only transformer, as the planner and the engine see it.
public struct ModelSpec: Sendable, Codable, Equatable {
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

    /// Width of one token's K (or V) row in one layer: kvHeads * headDim.
    public var kvDim: Int { kvHeads * headDim }
    /// Bytes of K and V for one token across all layers, stored as `type`.
    public func kvBytesPerToken(_ type: DType) -> Int { 2 * layers * type.bytes(elements: kvDim) }
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
