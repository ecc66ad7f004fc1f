import Foundation
import StrataFormats
import StrataTensor

/// A GGUF file opened as a model: its metadata turned into the `config.json` fields the
/// architecture decodes, its tensors presented under the Hugging Face names the architecture
/// reads (zero-copy views of the mapped file), its tokenizer rebuilt from `tokenizer.ggml.*`.
///
/// What llama.cpp's converter changes, and how Strata undoes it:
/// - Llama-family Q and K rows are permuted per head into RoPE's interleaved layout (pairs
///   `2i, 2i+1`); Strata rotates those weights with the interleaved layout instead of permuting
///   them back (attention scores are dot products over the head, unchanged by a permutation
///   applied to both q and k), so the tensors stay mapped (`WeightLayout.ropeInterleaved`).
/// - Gemma's RMSNorm weights are stored as `1 + w` (`.normWeightsIncludeOne`).
/// - GPT-2's Conv1D weights are stored transposed, `[out, in]` (`.linearOutIn`).
/// Each architecture names its layout (`ggufWeightLayout`); it travels beside the config
/// (`ConfigFile.layout`), never as a config.json key.
public enum GGUFModel {
    /// The architecture of a GGUF file (`general.architecture`).
    public static func architecture(of file: GGUFFile) throws -> any Architecture.Type {
        guard let name = try file.string("general.architecture") else { throw GGUFError.missingKey(file: file.path, key: "general.architecture") }
        let candidates = ModelRegistry.architectures.filter { $0.ggufArchitecture == name }
        guard let first = candidates.first else {
            let known = Set(ModelRegistry.architectures.compactMap { $0.ggufArchitecture }).sorted()
            throw ConfigError.unsupportedArchitecture(file: file.path, architecture: name, supported: known)
        }
        if candidates.count == 1 { return first }
        // llama.cpp writes Mixtral as `llama`: the expert count tells them apart
        let experts = try GGUFHyperparameters(file: file, prefix: name).int("expert_count") ?? 0
        return candidates.first { $0.ggufExperts == (experts > 0) } ?? first
    }

    /// The config.json an architecture decodes, from the file's metadata.
    public static func config(of file: GGUFFile, architecture a: any Architecture.Type) throws -> ConfigFile {
        let h = GGUFHyperparameters(file: file, prefix: a.ggufArchitecture ?? "")
        var fields = try a.ggufConfig(h)
        fields["architectures"] = [a.name]
        try h.checkAgainstTensors()
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        return ConfigFile(path: file.path, data: data, layout: a.ggufWeightLayout)
    }
}

/// Typed access to `<arch>.*` hyperparameters of a GGUF file, errors naming the key.
public struct GGUFHyperparameters {
    public let file: GGUFFile
    public let prefix: String
    public func int(_ key: String) throws -> Int? { try file.int(prefix + "." + key) }
    public func requireInt(_ key: String) throws -> Int {
        let v = try file.requireInt(prefix + "." + key)
        guard v > 0 else { throw GGUFError.invalid(file: file.path, field: prefix + "." + key, reason: "must be positive, got \(v)") }
        return v
    }
    /// A float hyperparameter; NaN or infinity is refused naming the key.
    public func double(_ key: String) throws -> Double? {
        guard let v = try file.double(prefix + "." + key) else { return nil }
        guard v.isFinite else { throw GGUFError.invalid(file: file.path, field: prefix + "." + key, reason: "must be finite, got \(v)") }
        return v
    }

    /// What llama.cpp checks between the metadata and the tensors, so that no part of the file
    /// is silently ignored: no `blk.N` tensor at or past `block_count`, and the token list as long
    /// as the embedding has rows (llama.cpp sizes the vocabulary by the list).
    func checkAgainstTensors() throws {
        let blocks = try requireInt("block_count")
        for name in file.tensorsByName.keys where name.hasPrefix("blk.") {
            let parts = name.split(separator: ".")
            if parts.count > 1, let n = Int(parts[1]), n >= blocks {
                throw GGUFError.invalid(file: file.path, field: prefix + ".block_count", reason: "\(blocks) blocks, but the file holds tensor \(name)")
            }
        }
        if let tokens = try file.strings("tokenizer.ggml.tokens"), let e = file.tensorsByName["token_embd.weight"], e.dims.count == 2, e.dims[1] != tokens.count {
            throw GGUFError.invalid(file: file.path, field: "tokenizer.ggml.tokens",
                                    reason: "\(tokens.count) tokens for an embedding of \(e.dims[1]) rows (llama.cpp refuses the mismatch)")
        }
    }
    public func string(_ key: String) throws -> String? { try file.string(prefix + "." + key) }
    public func hasTensor(_ name: String) -> Bool { file.tensorsByName[name] != nil }

    /// The vocabulary size: `<arch>.vocab_size`, else the embedding's rows, else the token
    /// list's length.
    public func vocabSize() throws -> Int {
        if let v = try int("vocab_size") { return v }
        if let e = file.tensorsByName["token_embd.weight"], e.dims.count == 2 { return e.dims[1] }
        if let t = try file.strings("tokenizer.ggml.tokens") { return t.count }
        throw GGUFError.missingKey(file: file.path, key: prefix + ".vocab_size")
    }

    /// A 1-D f32 tensor's values (rope frequency factors).
    public func floats(tensor name: String) throws -> [Float]? {
        guard file.tensorsByName[name] != nil else { return nil }
        let t = try file.tensor(name)
        guard t.dtype == .f32, t.rank == 1 else {
            throw GGUFError.badShape(file: file.path, tensor: name, reason: "expected a 1-D F32 tensor, got \(t.dtype) \(t.shape)")
        }
        return t.toArray()
    }

    /// The Llama-family fields (llama, qwen2, qwen3, phi3, gemma2 share them).
    public func llamaFamilyFields() throws -> [String: Any] {
        let heads = try requireInt("attention.head_count")
        var f: [String: Any] = [
            "vocab_size": try vocabSize(),
            "hidden_size": try requireInt("embedding_length"),
            "intermediate_size": try requireInt("feed_forward_length"),
            "num_hidden_layers": try requireInt("block_count"),
            "num_attention_heads": heads,
            "num_key_value_heads": try int("attention.head_count_kv") ?? heads,
            "tie_word_embeddings": !hasTensor("output.weight"),
        ]
        if let v = try int("context_length") { f["max_position_embeddings"] = v }
        // head_dim always present: the key length, else hidden / heads (the configs' own default)
        f["head_dim"] = try int("attention.key_length") ?? (f["hidden_size"] as! Int) / heads
        if let v = try double("attention.layer_norm_rms_epsilon") { f["rms_norm_eps"] = v }
        if let v = try double("rope.freq_base") { f["rope_theta"] = v }
        if let v = try file.int("tokenizer.ggml.bos_token_id") { f["bos_token_id"] = v }
        if let v = try file.int("tokenizer.ggml.eos_token_id") { f["eos_token_id"] = v }
        // every head rotates whole: a rotary width other than the head's is not this architecture
        if let rot = try int("rope.dimension_count"), rot != f["head_dim"] as! Int {
            throw GGUFError.invalid(file: file.path, field: prefix + ".rope.dimension_count",
                                    reason: "\(rot) rotary dimensions for heads of \(f["head_dim"] as! Int) (llama.cpp refuses it too)")
        }
        // the scaling type defaults to linear, as llama.cpp reads it; the factor may come from the
        // older `rope.scale_linear` key
        let factor = try double("rope.scaling.factor") ?? double("rope.scale_linear")
        if let factor, !(factor > 0) {
            throw GGUFError.invalid(file: file.path, field: prefix + ".rope.scaling.factor", reason: "must be positive, got \(factor)")
        }
        switch try string("rope.scaling.type") ?? (factor != nil ? "linear" : nil) {
        case nil, "none": break
        case "linear":
            guard let factor else { throw GGUFError.missingKey(file: file.path, key: prefix + ".rope.scaling.factor") }
            if factor != 1 { f["rope_scaling"] = ["rope_type": "linear", "factor": factor] }
        case "yarn":
            // llama.cpp's keys; the correction range is rounded out to whole dimensions (ggml's
            // rope does so) unless the architecture says otherwise (gpt-oss)
            guard let factor else { throw GGUFError.missingKey(file: file.path, key: prefix + ".rope.scaling.factor") }
            var y: [String: Any] = ["rope_type": "yarn", "factor": factor,
                                    "original_max_position_embeddings": try requireInt("rope.scaling.original_context_length")]
            if let v = try double("rope.scaling.yarn_beta_fast") { y["beta_fast"] = v }
            if let v = try double("rope.scaling.yarn_beta_slow") { y["beta_slow"] = v }
            if let v = try double("rope.scaling.yarn_attn_factor") { y["attention_factor"] = v }
            f["rope_scaling"] = y
        case let other?:
            throw GGUFError.invalid(file: file.path, field: prefix + ".rope.scaling.type", reason: "'\(other)' is not supported (none, linear, yarn)")
        }
        // Llama 3.1's frequency scaling is written as a tensor of per-frequency divisors
        if let divisors = try floats(tensor: "rope_freqs.weight") {
            f["rope_scaling"] = ["rope_type": "longrope", "short_factor": divisors, "long_factor": divisors,
                                 "original_max_position_embeddings": f["max_position_embeddings"] ?? 1 << 30, "attention_factor": 1.0]
        }
        return f
    }

    /// A mixture's fields (llama.cpp's `expert_count`, `expert_used_count` and, where the experts
    /// are narrower than the dense MLP, `expert_feed_forward_length`), under transformers' keys.
    public func expertFields(_ f: inout [String: Any], countKey: String, widthKey: String?) throws {
        f[countKey] = try requireInt("expert_count")
        f["num_experts_per_tok"] = try requireInt("expert_used_count")
        if let widthKey { f[widthKey] = try requireInt("expert_feed_forward_length") }
    }
}

extension Architecture {
    // Defaults: no GGUF of this architecture is read, its names come from the tensor table, and its
    // metadata is refused by name (an architecture must say how it reads GGUF metadata).
    public static var ggufArchitecture: String? { nil }
    public static var ggufWeightLayout: WeightLayout { [] }
    public static var ggufExperts: Bool { false }
    public static func tensorName(gguf name: String) -> String? { tensors.hfName(gguf: name) }
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        throw GGUFError.invalid(file: h.file.path, field: "general.architecture", reason: "\(name) has no reading of GGUF metadata")
    }
}

/// A GGUF file's tensors under the Hugging Face names of its architecture (tensors the
/// architecture does not read, such as `rope_freqs.weight`, keep their llama.cpp names).
public final class GGUFCheckpoint: WeightCheckpoint, @unchecked Sendable {
    public let file: GGUFFile
    /// HF name -> llama.cpp name
    private let ggufName: [String: String]
    private let entries: [String: TensorEntry]

    public init(file: GGUFFile, architecture a: any Architecture.Type) throws {
        self.file = file
        var names: [String: String] = [:], entries: [String: TensorEntry] = [:]
        for t in file.tensors {
            let hf = a.tensorName(gguf: t.name) ?? t.name
            if let prev = names[hf] { throw GGUFError.duplicateTensor(file: file.path, tensor: "\(t.name) (also \(prev))") }
            names[hf] = t.name
            entries[hf] = TensorEntry(name: hf, rawDType: t.type.name, dtype: t.type.dtype, shape: t.shape, begin: t.begin, end: t.end)
        }
        ggufName = names
        self.entries = entries
    }

    public var location: String { file.path }
    public var tensorNames: [String] { entries.keys.sorted() }
    public func contains(_ name: String) -> Bool { entries[name] != nil }
    public func entry(_ name: String) -> TensorEntry? { entries[name] }
    public func path(of name: String) -> String? { entries[name] != nil ? file.path : nil }
    public func tensor(_ name: String) throws -> Tensor {
        guard let g = ggufName[name] else { throw SafetensorsError.missingTensor(name: name, checkpoint: file.path) }
        return try file.tensor(g)
    }
}
