import StrataFormats
import StrataTensor

/// `MistralForCausalLM`'s `config.json`: the Llama family with Mistral's defaults and a
/// `sliding_window`. Strata runs Mistral without windowed attention, so the usable context is
/// capped at the window (`ModelSpec.maxPositions`), where full and windowed attention agree.
public struct MistralConfig: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "MistralForCausalLM", vocabSize: 32000, maxPositions: 4096 * 32, ropeTheta: 10000, rmsNormEps: 1e-6,
        tieEmbeddings: false, bos: [1], eos: [2], qkvBias: false)
    public init(from decoder: Decoder) throws { family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults) }
}

/// `MistralForCausalLM`: the Llama family's layout.
public enum MistralArchitecture: LlamaFamilyArchitecture {
    public static let name = "MistralForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(MistralConfig.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(MistralConfig.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table()
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "mistral") }
    /// llama.cpp writes Mistral as `llama` (its reader then opens it as Llama).
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(MistralConfig.self).family.ggufExport(arch: "llama", permute: true)
    }
}
