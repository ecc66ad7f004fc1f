import StrataFormats
import StrataTensor

/// `MixtralForCausalLM`'s `config.json` (Mixtral-8x7B, 8x22B): Mistral's attention with a
/// mixture of `num_local_experts` experts as every layer's MLP, each `intermediate_size` wide,
/// `num_experts_per_tok` per token, their weights always renormalized over the chosen ones.
public struct MixtralConfig: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "MixtralForCausalLM", vocabSize: 32000, maxPositions: 4096 * 32, ropeTheta: 1e6, rmsNormEps: 1e-5,
        tieEmbeddings: false, bos: [1], eos: [2], qkvBias: false,
        moe: MoEConfig.Defaults(experts: 8, expertsPerToken: 2, intermediate: nil, normalizeTopK: true))
    public init(from decoder: Decoder) throws { family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults) }
}

/// `MixtralForCausalLM`: Mistral's layout; the MLP is `block_sparse_moe.gate` (the router) and
/// `block_sparse_moe.experts.{e}.w1` (gate), `w3` (up), `w2` (down).
public enum MixtralArchitecture: LlamaFamilyArchitecture {
    public static let name = "MixtralForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(MixtralConfig.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(MixtralConfig.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(experts: .mixtral)
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] {
        LlamaFamily.synthConfig(shape, architecture: name, modelType: "mixtral")
    }
    /// llama.cpp writes Mixtral as `llama` with `llama.expert_count`, Q and K permuted as Llama's.
    public static var ggufArchitecture: String? { "llama" }
    public static var ggufExperts: Bool { true }
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(MixtralConfig.self).family.ggufExport(arch: "llama", permute: true)
    }
    public static var ggufWeightLayout: WeightLayout { .ropeInterleaved }
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try h.llamaFamilyFields()
        try h.expertFields(&f, countKey: "num_local_experts", widthKey: nil)
        return f
    }
}
