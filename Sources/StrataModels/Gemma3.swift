import Foundation
import StrataFormats
import StrataTensor

/// Gemma-3's text config (transformers' `Gemma3TextConfig`): Gemma-2's fields with Gemma-3's
/// defaults, RMSNorms (1 + w) over each head of q and k, sliding-window layers in a pattern
/// (`layer_types`, else every `sliding_window_pattern`-th layer (6) full), full-attention layers
/// rotated with `rope_theta` (1e6, optionally linearly scaled) and sliding ones with the local base
/// (1e4), no soft-capping unless asked. A multimodal `Gemma3ForConditionalGeneration` config nests
/// these fields under `text_config`; its vision tower is not read.
public struct Gemma3Config: Decodable, Sendable {
    /// The Gemma family's config the pass runs on (Gemma2.swift).
    public var family: Gemma2Config

    enum Keys: String, CodingKey { case textConfig = "text_config" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        if c.contains(.textConfig) {
            family = try Gemma2Config(from: c.superDecoder(forKey: .textConfig), gemma3: true)
        } else {
            family = try Gemma2Config(from: decoder, gemma3: true)
        }
    }
}

/// `Gemma3ForCausalLM` (Gemma 3 1B, and text checkpoints of the larger ones).
public enum Gemma3Architecture: Architecture {
    public static let name = "Gemma3ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Gemma3Config.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try Gemma2Model(config: config.decode(Gemma3Config.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table(qkvBias: .none, otherBias: .none, qkNorm: true, gemmaNorms: true)
    public static func synthConfig(_ s: SynthShape) -> [String: Any] {
        var c = Gemma2Architecture.synthConfig(s)
        c["architectures"] = [name]
        c["model_type"] = "gemma3_text"
        c["rope_theta"] = nil
        var full: [String: Any] = ["rope_type": "default", "rope_theta": s.ropeTheta]
        if let scaling = c.removeValue(forKey: "rope_scaling") as? [String: Any] { for (k, v) in scaling { full[k] = v } }
        c["rope_parameters"] = ["full_attention": full, "sliding_attention": ["rope_type": "default", "rope_theta": 10_000.0]]
        return c
    }
    public static var ggufArchitecture: String? { "gemma3" }
    public static var ggufWeightLayout: WeightLayout { .normWeightsIncludeOne }
    /// llama.cpp's gemma3: norms stored as 1 + w (q/k norms too), the local rotary base fixed at
    /// 1e4 and every sixth layer full, queries scaled by head_dim^-1/2 (27B, 62 layers:
    /// (hidden / heads)^-1/2).
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try Gemma2Architecture.gemmaFields(h, largestLayers: 62)
        var full: [String: Any] = ["rope_type": "default", "rope_theta": f["rope_theta"] ?? 1_000_000.0]
        if let scaling = f["rope_scaling"] as? [String: Any] { for (k, v) in scaling { full[k] = v } }
        f["rope_theta"] = nil
        f["rope_scaling"] = nil
        f["rope_parameters"] = ["full_attention": full, "sliding_attention": ["rope_type": "default", "rope_theta": 10_000.0]]
        return f
    }
}

/// `Gemma3ForConditionalGeneration` (Gemma 3 4B, 12B, 27B as published): the text model under
/// `text_config` and a prefix (`GemmaNames.multimodal`); the vision tower's tensors are not read.
public enum Gemma3MultimodalArchitecture: Architecture {
    public static let name = "Gemma3ForConditionalGeneration"
    public static func spec(config: ConfigFile) throws -> ModelSpec {
        var family = try config.decode(Gemma3Config.self).family
        family.architecture = name
        return family.spec
    }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        var family = try config.decode(Gemma3Config.self).family
        family.architecture = name
        guard let names = GemmaNames.multimodal.first(where: { store.contains($0.model + "embed_tokens.weight") }) else {
            throw ConfigError.invalidValue(file: config.path, field: "architectures",
                                           reason: "\(name) without a text model's embed_tokens.weight under \(GemmaNames.multimodal.map(\.model).joined(separator: " or "))")
        }
        family.names = names
        return try Gemma2Model(config: family, store: store)
    }
    /// Gemma-3's rows under the text model's prefixes (transformers 5's first, as synth writes).
    public static let tensors = TensorTable(prefixes: GemmaNames.multimodal.reversed().map(\.model), layerPrefix: "layers.",
                                            Gemma3Architecture.tensors.rows)
    /// The Hub's layout names the head `language_model.lm_head`: its place is the head's.
    public static func place(of tensor: String) -> TensorPlace? {
        tensors.place(of: tensor == GemmaNames.multimodal[0].lmHead ? "lm_head.weight" : tensor)
    }
    public static func synthConfig(_ s: SynthShape) -> [String: Any] {
        var text = Gemma3Architecture.synthConfig(s)
        text["architectures"] = nil
        return ["architectures": [name], "model_type": "gemma3", "text_config": text, "strata_synthetic": true,
                "tie_word_embeddings": s.tied]
    }
}
