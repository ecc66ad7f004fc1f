import Foundation
import StrataTensor

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
    /// the LM head's bytes as stored (nil: f32, 4 per parameter; a 16-bit or quantized head
    /// reads fewer bytes per decode step)
    public var headBytes: Int? = nil
    /// bytes of K and V per token, all layers, in the KV type planned
    public var kvBytesPerToken: Int
    /// fixed resident bytes: runtime overhead and activations at the workload's size
    public var fixedBytes: Int
    /// `fixedBytes` by the ledger's lines (empty: all of it counted as runtime overhead)
    public var fixedLines: [LedgerLine: Int] = [:]
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
