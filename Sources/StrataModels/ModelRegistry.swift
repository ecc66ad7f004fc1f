import Foundation
import StrataFormats
import StrataTensor

/// Which architectures Strata runs, and how each is built from a model folder.
/// Adding an architecture is a new file plus one line here.
public enum ModelRegistry {
    /// Every architecture Strata runs, one row each. Adding one is a new file with a type
    /// conforming to `Architecture`, plus its row here.
    public static let architectures: [any Architecture.Type] = [
        LlamaArchitecture.self, Qwen2Architecture.self, Qwen3Architecture.self, Phi3Architecture.self, Gemma2Architecture.self, MistralArchitecture.self, GPT2Architecture.self,
    ]

    public static var supportedArchitectures: [String] { architectures.map { $0.name }.sorted() }

    /// The architecture named `name` (config.json's `architectures[0]`), or nil.
    public static func architecture(named name: String) -> (any Architecture.Type)? { architectures.first { $0.name == name } }

    /// The architecture named by `config.json` in `directory`.
    public static func architecture(directory: String) throws -> any Architecture.Type {
        let path = (directory as NSString).appendingPathComponent("config.json")
        let probe = try decodeJSONFile(ArchitectureProbe.self, path: path)
        guard let arch = probe.architectures?.first else {
            throw ConfigError.malformed(file: path, field: "architectures", reason: "missing or empty")
        }
        guard let a = architecture(named: arch) else {
            throw ConfigError.unsupportedArchitecture(file: path, architecture: arch, supported: supportedArchitectures)
        }
        return a
    }

    /// Loads the model in `directory` (config.json + safetensors); weights stay mapped
    /// (or come from `store`, e.g. a tiered store that streams some layers from disk).
    public static func load(directory: String, store: WeightStore? = nil) throws -> CausalLM {
        let arch = try architecture(directory: directory)
        let s = try store ?? MappedWeightStore(checkpoint: SafetensorsCheckpoint(directory: directory))
        return try arch.build(configPath: (directory as NSString).appendingPathComponent("config.json"), store: s)
    }

    /// The model's spec from `config.json` alone (no weights opened): what the planner needs.
    public static func spec(directory: String) throws -> ModelSpec {
        try architecture(directory: directory).spec(configPath: (directory as NSString).appendingPathComponent("config.json"))
    }

    /// The model's spec with BOS/EOS from `generation_config.json` where it has them.
    public static func generationTokens(directory: String, spec: ModelSpec) throws -> (bos: [Int], eos: [Int]) {
        let g = try GenerationConfig.load(directory: directory)
        let bos = g?.bosTokenID?.ids ?? spec.bosTokenIDs
        let eos = g?.eosTokenID?.ids ?? spec.eosTokenIDs
        return (bos, eos)
    }
}
