import Foundation
import StrataFormats
import StrataTensor

/// `GptOssForCausalLM`'s `config.json` (gpt-oss-20b, gpt-oss-120b): the Llama family's attention
/// with biases on q, k, v and o, a sink logit per head, layers that alternate between a sliding
/// window and full attention (`layer_types`), YaRN rotary scaling; every layer's MLP a mixture of
/// `num_local_experts` experts of `intermediate_size`, `num_experts_per_tok` per token (the softmax
/// over the chosen logits), router and experts with biases, the experts' clamped SwiGLU
/// (`swiglu_alpha`, `swiglu_limit`).
public struct GptOssConfig: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "GptOssForCausalLM", vocabSize: 201088, maxPositions: 131072, ropeTheta: 150000, rmsNormEps: 1e-5,
        tieEmbeddings: false, bos: [], eos: [], qkvBias: false, headDim: 64,
        moe: MoEConfig.Defaults(experts: 128, expertsPerToken: 4, intermediate: nil, normalizeTopK: true))

    enum Keys: String, CodingKey {
        case layerTypes = "layer_types", alpha = "swiglu_alpha", limit = "swiglu_limit", attentionBias = "attention_bias"
        case slidingWindow = "sliding_window", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case layers = "num_hidden_layers"
    }

    public init(from decoder: Decoder) throws {
        let file = decoder.userInfo[configFileKey] as? String ?? "config.json"
        family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: Keys.self)
        // transformers' defaults: attention_bias true, a window of 128, sliding layers first and
        // every other one, YaRN (factor 32 over 4096 positions, betas 32 and 1, not truncated)
        if try c.decodeIfPresent(Bool.self, forKey: .attentionBias) == nil { family.qkvBias = true; family.oBias = true }
        let window = try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 128
        if window <= 0 { throw ConfigError.invalidValue(file: file, field: "sliding_window", reason: "must be positive, got \(window)") }
        family.slidingWindow = window
        let n = family.layers
        let types = try c.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? (0..<n).map { ($0 + 1) % 2 == 1 ? "sliding_attention" : "full_attention" }
        guard types.count == n else {
            throw ConfigError.invalidValue(file: file, field: "layer_types", reason: "\(types.count) entries for \(n) layers")
        }
        family.slidingLayers = try types.map {
            guard $0 == "sliding_attention" || $0 == "full_attention" else {
                throw ConfigError.invalidValue(file: file, field: "layer_types", reason: "'\($0)' is not sliding_attention or full_attention")
            }
            return $0 == "sliding_attention"
        }
        family.sinks = true
        if !c.contains(.ropeParameters) && !c.contains(.ropeScaling) {
            family.rope.kind = .yarn(factor: 32, originalMaxPositions: 4096, betaFast: 32, betaSlow: 1, truncate: false,
                                     attentionFactor: nil, mscale: nil, mscaleAllDim: nil)
        }
        let alpha = try c.decodeIfPresent(Double.self, forKey: .alpha) ?? 1.702, limit = try c.decodeIfPresent(Double.self, forKey: .limit) ?? 7
        guard alpha.isFinite, limit.isFinite, limit > 0 else {
            throw ConfigError.invalidValue(file: file, field: "swiglu_limit", reason: "swiglu_alpha \(alpha) and swiglu_limit \(limit) must be finite, the limit positive")
        }
        family.moe!.routerBias = true
        family.moe!.selectOnLogits = true
        family.moe!.expertBias = true
        family.moe!.activation = .clampedSwiGLU(alpha: Float(alpha), limit: Float(limit))
    }
}

/// `GptOssForCausalLM`. Hub checkpoints keep each layer's experts stacked as bare parameters:
/// `mlp.experts.gate_up_proj` `[experts, hidden, 2 ff]` (gate and up columns interleaved) and
/// `mlp.experts.down_proj` `[experts, ff, hidden]` (both `[in, out]`, read where they lie), with
/// `_bias` beside them; llama.cpp's converter splits and transposes them into `ffn_gate_exps`,
/// `ffn_up_exps`, `ffn_down_exps` (`[out, in]`, usually MXFP4) with `.bias` tensors.
public enum GptOssArchitecture: LlamaFamilyArchitecture {
    public static let name = "GptOssForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(GptOssConfig.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(GptOssConfig.self).family, store: store)
    }

    /// llama.cpp's rows (what a GGUF holds and `synth` writes): the family's attention with
    /// biases, the sinks, `post_attention_norm` before the MLP, the router and split experts.
    static let ggufTable: TensorTable = {
        var rows = LlamaFamily.table(qkvBias: .always, otherBias: .always).rows
            .filter { ![.mlpGate, .mlpUp, .mlpDown, .mlpNorm, .finalNorm, .outputHead].contains($0.role) }
        rows += [
            TensorRow(.attentionSinks, hf: "self_attn.sinks", gguf: "attn_sinks", parameter: true) { [$0.heads] },
            TensorRow(.mlpNorm, hf: "post_attention_layernorm", gguf: "post_attention_norm") { [$0.hidden] },
            TensorRow(.router, hf: "mlp.router", gguf: "ffn_gate_inp", bias: .always) { [$0.experts, $0.hidden] },
            TensorRow(.expertGate, hf: "mlp.experts.{e}.gate_proj", gguf: "ffn_gate_exps", .expert, bias: .always) { [$0.expertIntermediate, $0.hidden] },
            TensorRow(.expertUp, hf: "mlp.experts.{e}.up_proj", gguf: "ffn_up_exps", .expert, bias: .always) { [$0.expertIntermediate, $0.hidden] },
            TensorRow(.expertDown, hf: "mlp.experts.{e}.down_proj_split", gguf: "ffn_down_exps", .expert, bias: .always) { [$0.hidden, $0.expertIntermediate] },
            TensorRow(.finalNorm, hf: "norm", gguf: "output_norm", .global) { [$0.hidden] },
            TensorRow(.outputHead, hf: "lm_head", gguf: "output", .global) { [$0.vocab, $0.hidden] },
        ]
        return TensorTable(rows)
    }()

    /// The GGUF rows and the hub's stacked parameters beside them (no llama.cpp name: the
    /// converter rewrites them).
    public static let tensors: TensorTable = {
        var rows = ggufTable.rows
        let at = rows.firstIndex { $0.role == .finalNorm }!
        rows.insert(contentsOf: [
            TensorRow(.expertGateUp, hf: "mlp.experts.{e}.gate_up_proj", gguf: nil, .expert, bias: .always, outputAxis: 1, parameter: true) {
                [$0.hidden, 2 * $0.expertIntermediate]
            },
            TensorRow(.expertDownInOut, hf: "mlp.experts.{e}.down_proj", gguf: nil, .expert, bias: .always, outputAxis: 1, parameter: true) {
                [$0.expertIntermediate, $0.hidden]
            },
        ], at: at)
        return TensorTable(rows)
    }()

    // the model's size and synth's tensors: one set of experts (llama.cpp's rows)
    public static func parametersPerLayer(_ spec: ModelSpec) -> Int { ggufTable.layerElements(TensorDims(spec)).matrices }
    public static func vectorsPerLayer(_ spec: ModelSpec) -> Int { ggufTable.layerElements(TensorDims(spec)).vectors }
    public static func synthTensors(_ shape: SynthShape) -> [(name: String, shape: [Int])] {
        ggufTable.synth(TensorDims(shape), layers: shape.layers, tied: shape.tied)
    }

    public static func synthConfig(_ shape: SynthShape) -> [String: Any] {
        var c = LlamaFamily.synthConfig(shape, architecture: name, modelType: "gpt_oss")
        c.removeValue(forKey: "rope_theta")
        c["rope_parameters"] = ["rope_type": "yarn", "rope_theta": shape.ropeTheta, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                "truncate": false, "original_max_position_embeddings": 4096] as [String: Any]
        c["attention_bias"] = true
        return c
    }

    public static var ggufArchitecture: String? { "gpt-oss" }
    public static var ggufExperts: Bool { true }

    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        let f = try config.decode(GptOssConfig.self).family
        var x = f.ggufExport(arch: "gpt-oss", permute: false)
        x.metadata.append(("gpt-oss.attention.sliding_window", .u32(UInt32(clamping: f.slidingWindow ?? 0))))
        return x
    }

    /// llama.cpp's gpt-oss: the family's fields, the experts', the window on every other layer
    /// from the first (its swa pattern 2), the sinks, YaRN as the released models set it (the
    /// correction range not rounded: transformers' `truncate: false`; GGUF has no key for it).
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try h.llamaFamilyFields()
        try h.expertFields(&f, countKey: "num_local_experts", widthKey: nil)
        if let w = try h.int("expert_feed_forward_length"), w != f["intermediate_size"] as? Int {
            throw GGUFError.invalid(file: h.file.path, field: "gpt-oss.expert_feed_forward_length",
                                    reason: "\(w) differs from feed_forward_length \(f["intermediate_size"] ?? "?"); gpt-oss's experts are the MLP's width")
        }
        f["sliding_window"] = try h.requireInt("attention.sliding_window")
        let period = try h.int("attention.sliding_window_pattern") ?? 2
        guard period >= 1 else {
            throw GGUFError.invalid(file: h.file.path, field: "gpt-oss.attention.sliding_window_pattern", reason: "must be >= 1, got \(period)")
        }
        let layers = try h.requireInt("block_count")
        f["layer_types"] = (0..<min(layers, 1 << 16)).map { $0 % period < period - 1 ? "sliding_attention" : "full_attention" }
        f["attention_bias"] = true
        if var y = f["rope_scaling"] as? [String: Any], y["rope_type"] as? String == "yarn" {
            y["truncate"] = false
            f["rope_scaling"] = y
        } else if f["rope_scaling"] == nil {
            f["rope_scaling"] = ["rope_type": "default"]  // as llama.cpp reads a file without scaling keys
        }
        return f
    }
}
