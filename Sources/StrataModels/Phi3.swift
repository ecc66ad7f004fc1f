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
public enum Phi3Architecture: Architecture {
    public static let name = "Phi3ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Phi3Config.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(Phi3Config.self).family, store: store)
    }
    public static func place(of tensor: String) -> TensorPlace? { LlamaFamily.place(of: tensor) }
    public static func parametersPerLayer(_ spec: ModelSpec) -> Int { LlamaFamily.parametersPerLayer(spec) }
    public static func vectorsPerLayer(_ spec: ModelSpec) -> Int { LlamaFamily.vectorsPerLayer(spec) }
    public static func synthTensors(_ shape: SynthShape) -> [(name: String, shape: [Int])] {
        LlamaFamily.synthTensors(shape, qkvBias: false, fused: true)
    }
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "phi3") }
}
