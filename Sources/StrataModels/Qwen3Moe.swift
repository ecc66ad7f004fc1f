import StrataFormats
import StrataTensor

/// `Qwen3MoeForCausalLM`'s `config.json` (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B, Qwen3-235B-A22B):
/// Qwen3's attention (q/k norms, `head_dim` of its own) with a mixture of experts as the MLP:
/// `num_experts` (transformers 5 writes `num_local_experts`) experts of `moe_intermediate_size`,
/// `num_experts_per_tok` per token, their weights renormalized when `norm_topk_prob`; layers in
/// `mlp_only_layers`, or off the `decoder_sparse_step`, keep a dense MLP of `intermediate_size`.
public struct Qwen3MoeConfig: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "Qwen3MoeForCausalLM", vocabSize: 151936, maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6,
        tieEmbeddings: false, bos: [], eos: [], qkvBias: false, qkNorm: true, headDim: 128,
        moe: MoEConfig.Defaults(experts: 128, expertsPerToken: 8, intermediate: 768, normalizeTopK: nil))
    public init(from decoder: Decoder) throws {
        family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults)
        struct Flag: Decodable { var use_sliding_window: Bool? }
        if try Flag(from: decoder).use_sliding_window != true { family.slidingWindow = nil }
    }
}

/// `Qwen3MoeForCausalLM`: Qwen3's layout; a sparse layer's MLP is `mlp.gate` (the router) and
/// `mlp.experts.{e}.{gate,up,down}_proj`.
public enum Qwen3MoeArchitecture: LlamaFamilyArchitecture {
    public static let name = "Qwen3MoeForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Qwen3MoeConfig.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(Qwen3MoeConfig.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(qkNorm: true, experts: .mlp)
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] {
        LlamaFamily.synthConfig(shape, architecture: name, modelType: "qwen3_moe")
    }
    public static var ggufArchitecture: String? { "qwen3moe" }
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(Qwen3MoeConfig.self).family.ggufExport(arch: "qwen3moe", permute: false)
    }
    public static var ggufExperts: Bool { true }
    /// llama.cpp's qwen3moe: the family's fields and the experts'; it always renormalizes the
    /// chosen experts' weights (the released models' `norm_topk_prob`). GGUF has no
    /// `mlp_only_layers`: a layer with no router (`ffn_gate_inp`) keeps its dense MLP.
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try h.llamaFamilyFields()
        try h.expertFields(&f, countKey: "num_experts", widthKey: "moe_intermediate_size")
        f["norm_topk_prob"] = true
        let layers = try h.requireInt("block_count")
        f["mlp_only_layers"] = (0..<min(layers, 4096)).filter { !h.hasTensor("blk.\($0).ffn_gate_inp.weight") }
        return f
    }
}
