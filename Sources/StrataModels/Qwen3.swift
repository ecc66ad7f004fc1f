import StrataFormats
import StrataTensor

/// `Qwen3ForCausalLM`'s `config.json`: the Llama family with an RMSNorm over each head of q and
/// of k before RoPE (`q_norm`, `k_norm`), `head_dim` its own (128 by default, not hidden /
/// heads), no q/k/v bias unless `attention_bias`, and `use_sliding_window` (off by default).
public struct Qwen3Config: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "Qwen3ForCausalLM", vocabSize: 151936, maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6,
        tieEmbeddings: true, bos: [], eos: [], qkvBias: false, qkNorm: true, headDim: 128)
    public init(from decoder: Decoder) throws {
        family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults)
        // Qwen3 reads sliding_window only when use_sliding_window is true (default false)
        struct Flag: Decodable { var use_sliding_window: Bool? }
        if try Flag(from: decoder).use_sliding_window != true { family.slidingWindow = nil }
    }
}

/// `Qwen3ForCausalLM`: the Llama family's layout plus `self_attn.q_norm` / `k_norm` `[head_dim]`.
public enum Qwen3Architecture: LlamaFamilyArchitecture {
    public static let name = "Qwen3ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Qwen3Config.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(Qwen3Config.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(qkNorm: true)
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "qwen3") }
    public static var ggufArchitecture: String? { "qwen3" }
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(Qwen3Config.self).family.ggufExport(arch: "qwen3", permute: false)
    }
}
