import StrataFormats
import StrataTensor

/// `Phi3ForCausalLM`'s `config.json`: the Llama family with q|k|v stacked in `qkv_proj` and
/// gate|up in `gate_up_proj`, `partial_rotary_factor`, and `longrope` scaling (short and long
/// factors, `original_max_position_embeddings`), with transformers' Phi-3 defaults.
public struct Phi3Config: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "Phi3ForCausalLM", vocabSize: 32064, maxPositions: 4096, ropeTheta: 10000, rmsNormEps: 1e-5,
        tieEmbeddings: false, bos: [1], eos: [32000], qkvBias: false, fused: true)
    public init(from decoder: Decoder) throws { family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults) }
}

/// `Phi3ForCausalLM` (Phi-3, Phi-3.5 mini): the Llama family's layout with fused projections.
public enum Phi3Architecture: LlamaFamilyArchitecture {
    public static let name = "Phi3ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Phi3Config.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(Phi3Config.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(fused: true)
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "phi3") }

    public static var ggufArchitecture: String? { "phi3" }
    /// Partial rotary from `rope.dimension_count`; LongRoPE from the `rope_factors_short` and
    /// `rope_factors_long` tensors with `rope.scaling.original_context_length` and `attn_factor`.
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try h.llamaFamilyFields()
        let headDim = f["head_dim"] as! Int
        if let rot = try h.int("rope.dimension_count") { f["partial_rotary_factor"] = Double(rot) / Double(headDim) }
        if let w = try h.int("attention.sliding_window") { f["sliding_window"] = w }
        if let short = try h.floats(tensor: "rope_factors_short.weight"), let long = try h.floats(tensor: "rope_factors_long.weight") {
            var s: [String: Any] = ["rope_type": "longrope", "short_factor": short, "long_factor": long]
            if let o = try h.int("rope.scaling.original_context_length") { s["original_max_position_embeddings"] = o }
            if let a = try h.double("rope.scaling.attn_factor") { s["attention_factor"] = a }
            f["rope_scaling"] = s
        }
        return f
    }
}
