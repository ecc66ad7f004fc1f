import Foundation
import StrataFormats
import StrataTensor

/// Which architectures Strata runs, and how each is built from a model folder.
/// Adding an architecture is a new file plus one line here.
public enum ModelRegistry {
    /// Every architecture Strata runs, one row each. Adding one is a new file with a type
    /// conforming to `Architecture`, plus its row here.
    public static let architectures: [any Architecture.Type] = [
        LlamaArchitecture.self, Qwen2Architecture.self, Qwen3Architecture.self, Phi3Architecture.self, Gemma2Architecture.self, Gemma3Architecture.self, Gemma3MultimodalArchitecture.self,
        MistralArchitecture.self, GPT2Architecture.self, Qwen3MoeArchitecture.self, MixtralArchitecture.self, GptOssArchitecture.self,
    ]

    public static var supportedArchitectures: [String] { architectures.map { $0.name }.sorted() }

    /// The architecture named `name` (config.json's `architectures[0]`), or nil.
    public static func architecture(named name: String) -> (any Architecture.Type)? { architectures.first { $0.name == name } }

    /// The architecture named by `config.json` in `directory`.
    public static func architecture(directory: String) throws -> any Architecture.Type {
        try architecture(of: ConfigFile(directory: directory))
    }

    /// The architecture a config names (`architectures[0]`).
    public static func architecture(of config: ConfigFile) throws -> any Architecture.Type {
        let probe = try config.decode(ArchitectureProbe.self)
        guard let arch = probe.architectures?.first else {
            throw ConfigError.malformed(file: config.path, field: "architectures", reason: "missing or empty")
        }
        guard let a = architecture(named: arch) else {
            throw ConfigError.unsupportedArchitecture(file: config.path, architecture: arch, supported: supportedArchitectures)
        }
        return a
    }

    /// Loads the model in `directory` (config.json + safetensors); weights stay mapped
    /// (or come from `store`, e.g. a tiered store that streams some layers from disk).
    public static func load(directory: String, store: WeightStore? = nil) throws -> CausalLM {
        try ModelFolder(path: directory).load(store: store)
    }

    /// The model's spec from `config.json` alone (no weights opened): what the planner needs.
    public static func spec(directory: String) throws -> ModelSpec {
        let config = try ConfigFile(directory: directory)
        try config.checkShapeFields()
        let spec = try architecture(of: config).spec(config: config)
        try spec.validate(file: (directory as NSString).appendingPathComponent("config.json"))
        return spec
    }

}
