import Foundation
import StrataFormats
import StrataTensor

/// A model opened once: a Hugging Face folder or a GGUF file.
///
/// A folder: `config.json` read and decoded once (its architecture and shape), the
/// `*.safetensors` headers read once (the files mapped, zero-copy), `tokenizer.json` and
/// `generation_config.json` parsed once. A folder with config.json alone (no weights) opens
/// too: `checkpoint` is nil and the planner works from the shape.
///
/// A `.gguf` file (llama.cpp's format): its metadata becomes the config, its tensors the
/// checkpoint (under the HF names), its `tokenizer.ggml.*` the tokenizer (`GGUFModel`).
///
/// Everything below the CLI takes this value, not a path, so nothing opens the files again.
public final class ModelFolder: @unchecked Sendable {
    /// What is odd about the model but runs (printed to standard error when it opens).
    public private(set) var warnings: [String] = []

    /// The folder, or the GGUF file.
    public let directory: String
    public let config: ConfigFile
    public let architecture: any Architecture.Type
    public let spec: ModelSpec
    /// The weights' headers (nil when the folder has no `*.safetensors`).
    public let checkpoint: (any WeightCheckpoint)?
    /// nil when the folder has no tokenizer.json (then only ids can be used).
    public let tokenizer: Tokenizer?
    public let generation: GenerationConfig?
    /// The GGUF file, when the model is one.
    public let gguf: GGUFFile?

    /// A folder, or a GGUF file (a path that is a regular file).
    public convenience init(path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            try self.init(gguf: path)
        } else {
            try self.init(directory: path)
        }
    }

    /// A GGUF file.
    public init(gguf path: String) throws {
        let file = try GGUFFile(path: path)
        directory = path
        gguf = file
        architecture = try GGUFModel.architecture(of: file)
        config = try GGUFModel.config(of: file, architecture: architecture)
        try config.checkShapeFields()
        spec = try architecture.spec(config: config)
        try spec.validate(file: path)
        checkpoint = try GGUFCheckpoint(file: file, architecture: architecture)
        tokenizer = try GGUFTokenizer.load(file)
        generation = nil
    }

    public init(directory: String) throws {
        self.directory = directory
        gguf = nil
        config = try ConfigFile(directory: directory)
        try config.checkShapeFields()
        architecture = try ModelRegistry.architecture(of: config)
        spec = try architecture.spec(config: config)
        try spec.validate(file: (directory as NSString).appendingPathComponent("config.json"))
        warnings = spec.warnings(file: (directory as NSString).appendingPathComponent("config.json"))
        for w in warnings { FileHandle.standardError.write(Data(("warning: " + w + "\n").utf8)) }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        checkpoint = files.contains { $0.hasSuffix(".safetensors") } ? try SafetensorsCheckpoint(directory: directory) : nil
        tokenizer = files.contains("tokenizer.json") ? try Tokenizer(directory: directory) : nil
        generation = try GenerationConfig.load(directory: directory)
        // its values are the defaults of every request: checked once, here, naming the file
        do { try SamplingParameters.defaults(from: generation).validate() } catch let SamplingError.invalid(field, reason) {
            let names = ["max_tokens": "max_new_tokens"]
            throw ConfigError.invalidValue(file: (directory as NSString).appendingPathComponent("generation_config.json"),
                                           field: names[field] ?? field, reason: reason)
        }
    }

    /// The checkpoint, or a typed error naming the folder when it has none.
    public func requireCheckpoint() throws -> any WeightCheckpoint {
        guard let c = checkpoint else { throw SafetensorsError.noWeights(directory: directory) }
        return c
    }

    /// The model over `store` (default: the mapped checkpoint).
    public func load(store: WeightStore? = nil) throws -> CausalLM {
        let s = try store ?? MappedWeightStore(checkpoint: requireCheckpoint())
        return try architecture.build(config: config, store: s)
    }

    /// BOS/EOS: generation_config.json's where it has them, else config.json's.
    /// Sampling defaults from generation_config.json (`SamplingParameters.defaults(from:)`);
    /// a GGUF has none.
    public var samplingDefaults: SamplingParameters { SamplingParameters.defaults(from: generation) }

    public var generationTokens: (bos: [Int], eos: [Int]) {
        (generation?.bosTokenID?.ids ?? spec.bosTokenIDs, generation?.eosTokenID?.ids ?? spec.eosTokenIDs)
    }

    /// The storage dtype config.json declares (`torch_dtype` / `dtype`), nil when none.
    public func declaredDType() throws -> DType? { gguf != nil ? nil : try ConfigDType.load(config) }
}
