import StrataFormats

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
