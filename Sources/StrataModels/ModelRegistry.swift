import Foundation
import StrataFormats
import StrataTensor

/// Which architectures Strata runs, and how each is built from a model folder.
/// Adding an architecture is a new file plus one line here.
public enum ModelRegistry {
    typealias Builder = @Sendable (_ configPath: String, _ store: WeightStore) throws -> CausalLM

    static let builders: [String: Builder] = [
        "LlamaForCausalLM": { try LlamaModel(config: decodeConfig(LlamaConfig.self, path: $0).family, store: $1) },
        "Qwen2ForCausalLM": { try LlamaModel(config: decodeConfig(Qwen2Config.self, path: $0).family, store: $1) },
        "MistralForCausalLM": { try LlamaModel(config: decodeConfig(MistralConfig.self, path: $0).family, store: $1) },
        "GPT2LMHeadModel": { try GPT2Model(config: decodeConfig(GPT2Config.self, path: $0), store: $1) },
    ]

    public static var supportedArchitectures: [String] { builders.keys.sorted() }

    /// The architecture named by `config.json` in `directory`.
    public static func architecture(directory: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent("config.json")
        let probe = try decodeJSONFile(ArchitectureProbe.self, path: path)
        guard let arch = probe.architectures?.first else {
            throw ConfigError.malformed(file: path, field: "architectures", reason: "missing or empty")
        }
        guard builders[arch] != nil else {
            throw ConfigError.unsupportedArchitecture(file: path, architecture: arch, supported: supportedArchitectures)
        }
        return arch
    }

    /// Loads the model in `directory` (config.json + safetensors); weights stay mapped
    /// (or come from `store`, e.g. a tiered store that streams some layers from disk).
    public static func load(directory: String, store: WeightStore? = nil) throws -> CausalLM {
        let arch = try architecture(directory: directory)
        let s = try store ?? MappedWeightStore(checkpoint: SafetensorsCheckpoint(directory: directory))
        return try builders[arch]!((directory as NSString).appendingPathComponent("config.json"), s)
    }

    static let specReaders: [String: @Sendable (String) throws -> ModelSpec] = [
        "LlamaForCausalLM": { try decodeConfig(LlamaConfig.self, path: $0).family.spec },
        "Qwen2ForCausalLM": { try decodeConfig(Qwen2Config.self, path: $0).family.spec },
        "MistralForCausalLM": { try decodeConfig(MistralConfig.self, path: $0).family.spec },
        "GPT2LMHeadModel": { try decodeConfig(GPT2Config.self, path: $0).spec },
    ]

    /// The model's spec from `config.json` alone (no weights opened): what the planner needs.
    public static func spec(directory: String) throws -> ModelSpec {
        let arch = try architecture(directory: directory)
        return try specReaders[arch]!((directory as NSString).appendingPathComponent("config.json"))
    }

    /// The model's spec with BOS/EOS from `generation_config.json` where it has them.
    public static func generationTokens(directory: String, spec: ModelSpec) throws -> (bos: [Int], eos: [Int]) {
        let g = try GenerationConfig.load(directory: directory)
        let bos = g?.bosTokenID?.ids ?? spec.bosTokenIDs
        let eos = g?.eosTokenID?.ids ?? spec.eosTokenIDs
        return (bos, eos)
    }
}
