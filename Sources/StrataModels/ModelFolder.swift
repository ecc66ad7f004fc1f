import Foundation
import StrataFormats
import StrataTensor

/// A model folder opened once: `config.json` read and decoded once (its architecture and
/// shape), the `*.safetensors` headers read once (the files mapped, zero-copy), `tokenizer.json`
/// and `generation_config.json` parsed once. Everything below the CLI takes this value, not a
/// path, so nothing opens the folder's files again. A folder with config.json alone (no
/// weights) opens too: `checkpoint` is nil and the planner works from the shape.
public final class ModelFolder: @unchecked Sendable {
    public let directory: String
    public let config: ConfigFile
    public let architecture: any Architecture.Type
    public let spec: ModelSpec
    /// The weights' headers (nil when the folder has no `*.safetensors`).
    public let checkpoint: SafetensorsCheckpoint?
    /// nil when the folder has no tokenizer.json (then only ids can be used).
    public let tokenizer: Tokenizer?
    public let generation: GenerationConfig?

    public init(directory: String) throws {
        self.directory = directory
        config = try ConfigFile(directory: directory)
        architecture = try ModelRegistry.architecture(of: config)
        spec = try architecture.spec(config: config)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        checkpoint = files.contains { $0.hasSuffix(".safetensors") } ? try SafetensorsCheckpoint(directory: directory) : nil
        let tokPath = (directory as NSString).appendingPathComponent("tokenizer.json")
        tokenizer = files.contains("tokenizer.json") ? try Tokenizer(path: tokPath) : nil
        generation = try GenerationConfig.load(directory: directory)
    }

    /// The checkpoint, or a typed error naming the folder when it has none.
    public func requireCheckpoint() throws -> SafetensorsCheckpoint {
        guard let c = checkpoint else { throw SafetensorsError.noWeights(directory: directory) }
        return c
    }

    /// The model over `store` (default: the mapped checkpoint).
    public func load(store: WeightStore? = nil) throws -> CausalLM {
        let s = try store ?? MappedWeightStore(checkpoint: requireCheckpoint())
        return try architecture.build(config: config, store: s)
    }

    /// BOS/EOS: generation_config.json's where it has them, else config.json's.
    public var generationTokens: (bos: [Int], eos: [Int]) {
        (generation?.bosTokenID?.ids ?? spec.bosTokenIDs, generation?.eosTokenID?.ids ?? spec.eosTokenIDs)
    }

    /// The storage dtype config.json declares (`torch_dtype` / `dtype`), nil when none.
    public func declaredDType() throws -> DType? { try ConfigDType.load(config) }
}
