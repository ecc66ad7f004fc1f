import Foundation
import StrataFormats
import StrataTensor

/// What a checkpoint tensor does in the model (llama.cpp's tensor table, `LLM_TENSOR_*`).
/// A bias has the role of its matrix or norm.
public enum TensorRole: String, Sendable, Codable, CaseIterable {
    case tokenEmbedding, positionEmbedding
    case attentionNorm, attentionQuery, attentionKey, attentionValue, attentionQKV, attentionOutput
    /// Qwen3's RMSNorm over each head of q, of k
    case attentionQueryNorm, attentionKeyNorm
    /// Gemma's norms of the attention's output and the MLP's output (before the residual add)
    case attentionPostNorm, mlpPostNorm
    /// gpt-oss's attention sinks: one logit per query head
    case attentionSinks
    case mlpNorm, mlpGate, mlpUp, mlpGateUp, mlpDown
    /// A mixture of experts' router (one row per expert), each routed expert's matrices, and a
    /// shared expert's (run for every token)
    case router, expertGate, expertUp, expertGateUp, expertDown, sharedExpertGate, sharedExpertUp, sharedExpertDown
    /// gpt-oss's hub layout of an expert's down projection, `[in, out]` (its `expertGateUp` is
    /// `[in, 2 out]`, gate and up columns interleaved)
    case expertDownInOut
    case finalNorm, outputHead

    /// The coarse group `inspect` prints: embedding, attention, mlp, experts, norm, lm_head.
    public var group: String {
        switch self {
        case .tokenEmbedding, .positionEmbedding: return "embedding"
        case .attentionQuery, .attentionKey, .attentionValue, .attentionQKV, .attentionOutput, .attentionSinks: return "attention"
        case .mlpGate, .mlpUp, .mlpGateUp, .mlpDown, .sharedExpertGate, .sharedExpertUp, .sharedExpertDown: return "mlp"
        case .router, .expertGate, .expertUp, .expertGateUp, .expertDown, .expertDownInOut: return "experts"
        case .attentionNorm, .attentionQueryNorm, .attentionKeyNorm, .attentionPostNorm, .mlpNorm, .mlpPostNorm, .finalNorm: return "norm"
        case .outputHead: return "lm_head"
        }
    }
}

/// Where a tensor belongs: its layer (nil outside the layers) and its role.
public struct TensorPlace: Sendable, Equatable {
    public var layer: Int?
    public var role: TensorRole
    /// One routed expert's tensor: its index (nil for every other tensor, and for a layer's
    /// experts stacked in one tensor).
    public var expert: Int?
    public init(layer: Int?, role: TensorRole, expert: Int? = nil) { self.layer = layer; self.role = role; self.expert = expert }
}

/// The shape `synth` writes (from a real model's public config).
public struct SynthShape: Sendable {
    public var hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int
    public var maxPositions: Int
    public var tied: Bool
    public var ropeTheta: Double
    public var rmsEps: Double
    /// extra config.json fields (rope_scaling, head_dim, ...), as a JSON object
    public var extra: String
    public init(hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int, maxPositions: Int, tied: Bool,
                ropeTheta: Double, rmsEps: Double, extra: String = "{}") {
        self.hidden = hidden; self.intermediate = intermediate; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads
        self.vocab = vocab; self.maxPositions = maxPositions; self.tied = tied; self.ropeTheta = ropeTheta; self.rmsEps = rmsEps
        self.extra = extra
    }
    /// The extra fields decoded (empty when not a JSON object).
    public var extraFields: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(extra.utf8)) as? [String: Any]) ?? [:]
    }
}

/// One model architecture: everything Strata's shared code needs to know about it, answered in
/// the architecture's own file, so no shared code checks an architecture's name or its tensor
/// names. The registry (`ModelRegistry.architectures`) lists one conforming type per row.
public protocol Architecture: Sendable {
    /// config.json's `architectures[0]`, e.g. `LlamaForCausalLM`.
    static var name: String { get }
    /// The model's shape from its config.json (no weights opened).
    static func spec(config: ConfigFile) throws -> ModelSpec
    /// The model over `store`'s weights.
    static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM
    /// Every tensor this architecture reads, one row each (role, HF and llama.cpp names, bias,
    /// shape): `place(of:)`, `tensorName(gguf:)`, `ggufName(hf:)`, `synthTensors` and the per-layer
    /// counts are derived from it (TensorTable.swift).
    static var tensors: TensorTable { get }
    /// Where a checkpoint tensor belongs; nil for a name this architecture does not read.
    /// Default: the table's answer.
    static func place(of tensor: String) -> TensorPlace?
    /// Parameters of one layer's matrices (q, k, v, o and the MLP), from the shape. Default: the table's.
    static func parametersPerLayer(_ spec: ModelSpec) -> Int
    /// Elements of one layer's vectors (norms, biases), from the shape. Default: the table's.
    static func vectorsPerLayer(_ spec: ModelSpec) -> Int
    /// The checkpoint tensors `synth` writes for `shape`, in file order. Default: the table's.
    static func synthTensors(_ shape: SynthShape) -> [(name: String, shape: [Int])]
    /// The config.json `synth` writes for `shape` (without the dtype).
    static func synthConfig(_ shape: SynthShape) -> [String: Any]
    /// GGUF's `general.architecture` of this architecture (nil: Strata reads no GGUF of it;
    /// llama.cpp writes Mistral as `llama`). Default nil (GGUFModel.swift).
    static var ggufArchitecture: String? { get }
    /// Whether this architecture's GGUF files hold routed experts (`<arch>.expert_count`): where
    /// two architectures share a `general.architecture` (llama.cpp writes Mixtral as `llama`),
    /// the file's expert count chooses. Default false.
    static var ggufExperts: Bool { get }
    /// The HF name of a llama.cpp tensor name (nil: not read). Default: the table's.
    static func tensorName(gguf: String) -> String?
    /// The config.json fields of a GGUF file's metadata. Default: an error naming the
    /// architecture; the Llama family's fields for a `LlamaFamilyArchitecture`.
    static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any]
    /// How llama.cpp's converter changed this architecture's weights in a GGUF (default none).
    static var ggufWeightLayout: WeightLayout { get }
    /// How to write a folder of this architecture as GGUF; nil (the default) when Strata cannot.
    static func ggufExport(config: ConfigFile) throws -> GGUFExport?
}

extension Architecture {
    public static func place(of tensor: String) -> TensorPlace? { tensors.place(of: tensor) }
    public static func parametersPerLayer(_ spec: ModelSpec) -> Int { tensors.layerElements(TensorDims(spec)).matrices }
    public static func vectorsPerLayer(_ spec: ModelSpec) -> Int { tensors.layerElements(TensorDims(spec)).vectors }
    public static func synthTensors(_ shape: SynthShape) -> [(name: String, shape: [Int])] {
        tensors.synth(TensorDims(shape), layers: shape.layers, tied: shape.tied)
    }

    /// The token embedding, read a row per token (cold) when the model has a separate output
    /// head; nil when the checkpoint's names contain no token embedding.
    public static func coldEmbedding(in names: [String]) -> String? {
        guard names.contains(where: { place(of: $0)?.role == .outputHead }) else { return nil }
        return names.first { place(of: $0)?.role == .tokenEmbedding }
    }
}

/// Splits `<prefix>N.<rest>` into (N, rest); nil when `name` does not start so.
func layerSuffix(_ name: String, prefix: String) -> (Int, Substring)? {
    guard name.hasPrefix(prefix) else { return nil }
    let rest = name.dropFirst(prefix.count)
    guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0 else { return nil }
    return (n, rest[rest.index(after: dot)...])
}

/// An architecture of the Llama family (Llama, Mistral, Qwen2, Qwen3, Phi-3): GGUF metadata read
/// as the family's fields unless it says otherwise.
public protocol LlamaFamilyArchitecture: Architecture {}

extension LlamaFamilyArchitecture {
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] { try h.llamaFamilyFields() }
}
