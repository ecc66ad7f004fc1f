import StrataFormats
import StrataTensor

/// `Qwen2ForCausalLM`'s `config.json`: the Llama family with a bias on q, k and v
/// (not on o), Qwen2's defaults, and `use_sliding_window` (off by default).
public struct Qwen2Config: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "Qwen2ForCausalLM", vocabSize: 151936, maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6,
        tieEmbeddings: false, bos: [], eos: [], qkvBias: true)
    public init(from decoder: Decoder) throws {
        family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults)
        // Qwen2 reads sliding_window only when use_sliding_window is true (default false)
        struct Flag: Decodable { var use_sliding_window: Bool? }
        if try Flag(from: decoder).use_sliding_window != true { family.slidingWindow = nil }
    }
}

/// `Qwen2ForCausalLM`: the Llama family's layout with biases on q, k and v.
public enum Qwen2Architecture: LlamaFamilyArchitecture {
    public static let name = "Qwen2ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Qwen2Config.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(Qwen2Config.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(qkvBias: .always, otherBias: .none)
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "qwen2") }
    public static var ggufArchitecture: String? { "qwen2" }
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(Qwen2Config.self).family.ggufExport(arch: "qwen2", permute: false)
    }
}
