import StrataFormats

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
