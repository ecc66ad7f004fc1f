import Foundation
import StrataFormats
import StrataTensor

/// `Gemma2ForCausalLM`'s `config.json` (keys and defaults as transformers' `Gemma2Config`).
public struct Gemma2Config: Decodable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var maxPositions: Int
    public var rmsNormEps: Double
    public var rope: RopeSettings
    /// Attention scores are scaled by `queryPreAttnScalar ** -0.5` (not headDim).
    public var queryPreAttnScalar: Double
    /// `softcap * tanh(x / softcap)` on attention scores and on the final logits (nil: none).
    public var attnSoftcap: Double?
    public var finalSoftcap: Double?
    public var slidingWindow: Int?
    /// Per layer: true where attention is windowed (`layer_types` "sliding_attention"; by
    /// default every even layer, counting from 0).
    public var slidingLayers: [Bool]
    public var tieEmbeddings: Bool
    /// The norm weights are stored as 1 + w (a GGUF of llama.cpp's converter).
    public var normWeightsIncludeOne: Bool
    public var bos: [Int]
    public var eos: [Int]
    /// The Gemma-3 additions (Gemma3.swift sets them; Gemma-2 leaves the defaults): the
    /// architecture's name, RMSNorm (1 + w) over each head of q and k before RoPE, the rotary
    /// settings of the sliding layers (nil: `rope` on every layer), and the checkpoint's names.
    public var architecture: String = Gemma2Architecture.name
    public var qkNorm = false
    public var slidingRope: RopeSettings? = nil
    public var names = GemmaNames.text

    enum Keys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers", heads = "num_attention_heads", kvHeads = "num_key_value_heads", headDim = "head_dim"
        case maxPositions = "max_position_embeddings", rmsNormEps = "rms_norm_eps", query = "query_pre_attn_scalar"
        case attnSoftcap = "attn_logit_softcapping", finalSoftcap = "final_logit_softcapping", slidingWindow = "sliding_window"
        case layerTypes = "layer_types", tie = "tie_word_embeddings", bos = "bos_token_id", eos = "eos_token_id"
        case act = "hidden_activation", attentionBias = "attention_bias"
        case slidingPattern = "sliding_window_pattern", bidirectional = "use_bidirectional_attention"
    }

    /// The Gemma-2 fields of `decoder`'s config; `gemma3` takes Gemma-3's defaults and rotary
    /// settings (Gemma3Config).
    init(from decoder: Decoder, gemma3: Bool) throws {
        let file = decoder.userInfo[configFileKey] as? String ?? "config.json"
        let c = try decoder.container(keyedBy: Keys.self)
        func positive(_ v: Int, _ field: String) throws {
            if v <= 0 { throw ConfigError.invalidValue(file: file, field: field, reason: "must be positive, got \(v)") }
        }
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? (gemma3 ? 262_208 : 256000)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 2304
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 9216
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? 26
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? 8
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? 4
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? 256
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? (gemma3 ? 131_072 : 8192)
        for (v, f) in [(vocabSize, "vocab_size"), (hiddenSize, "hidden_size"), (intermediateSize, "intermediate_size"), (layers, "num_hidden_layers"),
                       (heads, "num_attention_heads"), (kvHeads, "num_key_value_heads"), (headDim, "head_dim"), (maxPositions, "max_position_embeddings")] {
            try positive(v, f)
        }
        if heads % kvHeads != 0 {
            throw ConfigError.invalidValue(file: file, field: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        if headDim % 2 != 0 { throw ConfigError.invalidValue(file: file, field: "head_dim", reason: "must be even for RoPE, got \(headDim)") }
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        if gemma3 {
            // full-attention layers: rope_theta 1e6 and any linear scaling; sliding ones: 1e4, unscaled
            let (full, sliding) = try RopeSettings.decodePerLayerType(from: decoder, defaultTheta: (1_000_000, 10_000), file: file)
            for (r, field) in [(full, "rope_parameters.full_attention"), (sliding, "rope_parameters.sliding_attention")] {
                switch r.kind {
                case .none, .linear: break
                default: throw ConfigError.invalidValue(file: file, field: field, reason: "Gemma-3 takes default or linear rotary scaling")
                }
            }
            rope = full
            slidingRope = sliding
        } else {
            rope = try RopeSettings.decode(from: decoder, defaultTheta: 10000, file: file)
            if rope.kind != .none { throw ConfigError.invalidValue(file: file, field: "rope_scaling", reason: "Gemma-2 takes no rotary scaling") }
            if rope.partialRotaryFactor != 1 {
                throw ConfigError.invalidValue(file: file, field: "partial_rotary_factor", reason: "Gemma-2 rotates whole heads, got \(rope.partialRotaryFactor)")
            }
        }
        queryPreAttnScalar = try c.decodeIfPresent(Double.self, forKey: .query) ?? 256
        if !(queryPreAttnScalar > 0) { throw ConfigError.invalidValue(file: file, field: "query_pre_attn_scalar", reason: "must be positive") }
        attnSoftcap = try c.decodeIfPresent(Double.self, forKey: .attnSoftcap) ?? (gemma3 ? nil : 50)
        finalSoftcap = try c.decodeIfPresent(Double.self, forKey: .finalSoftcap) ?? (gemma3 ? nil : 30)
        for (v, f) in [(attnSoftcap, "attn_logit_softcapping"), (finalSoftcap, "final_logit_softcapping")] where v != nil && !(v! > 0) {
            throw ConfigError.invalidValue(file: file, field: f, reason: "must be positive or null")
        }
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 4096
        if let w = slidingWindow { try positive(w, "sliding_window") }
        if let types = try c.decodeIfPresent([String].self, forKey: .layerTypes) {
            guard types.count == layers, types.allSatisfy({ $0 == "sliding_attention" || $0 == "full_attention" }) else {
                throw ConfigError.invalidValue(file: file, field: "layer_types", reason: "needs \(layers) of sliding_attention / full_attention")
            }
            slidingLayers = types.map { $0 == "sliding_attention" }
        } else if gemma3 {
            // transformers' default: every sliding_window_pattern-th layer (6) attends fully
            let pattern = try c.decodeIfPresent(Int.self, forKey: .slidingPattern) ?? 6
            try positive(pattern, "sliding_window_pattern")
            slidingLayers = (0..<layers).map { ($0 + 1) % pattern != 0 }
        } else {
            slidingLayers = (0..<layers).map { ($0 + 1) % 2 == 1 }
        }
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tie) ?? true
        normWeightsIncludeOne = WeightLayout.of(decoder).contains(.normWeightsIncludeOne)
        bos = try c.decodeIfPresent(TokenIDs.self, forKey: .bos)?.ids ?? [2]
        eos = try c.decodeIfPresent(TokenIDs.self, forKey: .eos)?.ids ?? [1]
        let act = try c.decodeIfPresent(String.self, forKey: .act) ?? "gelu_pytorch_tanh"
        if act != "gelu_pytorch_tanh" && act != "gelu_tanh" {
            throw ConfigError.invalidValue(file: file, field: "hidden_activation", reason: "'\(act)' not supported (gelu_pytorch_tanh)")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .attentionBias) == true {
            throw ConfigError.invalidValue(file: file, field: "attention_bias", reason: "true is not supported")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .bidirectional) == true {
            throw ConfigError.invalidValue(file: file, field: "use_bidirectional_attention", reason: "true (an encoder's attention) is not supported")
        }
        if gemma3 {
            architecture = Gemma3Architecture.name
            qkNorm = true
        }
    }

    public init(from decoder: Decoder) throws { try self.init(from: decoder, gemma3: false) }

    public var spec: ModelSpec {
        ModelSpec(architecture: architecture, vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                  layers: layers, heads: heads, kvHeads: kvHeads, headDim: headDim, maxPositions: maxPositions,
                  tiedEmbeddings: tieEmbeddings, bosTokenIDs: bos, eosTokenIDs: eos, queryBufferWidth: heads * headDim)
    }
}

/// Where a Gemma checkpoint keeps the text model's tensors: `model.` (text models); a multimodal
/// Gemma-3's text part under `language_model.model.` (the Hub's checkpoints) or
/// `model.language_model.` (transformers >= 5).
public struct GemmaNames: Sendable, Equatable {
    /// prefix of `embed_tokens.weight`, `layers.N.`, `norm.weight`
    public var model: String
    public var lmHead: String
    public static let text = GemmaNames(model: "model.", lmHead: "lm_head.weight")
    public static let multimodal = [GemmaNames(model: "language_model.model.", lmHead: "language_model.lm_head.weight"),
                                    GemmaNames(model: "model.language_model.", lmHead: "lm_head.weight")]
}

/// Gemma-2's decoder: embeddings times sqrt(hidden); per layer RMSNorm (1 + w) -> attention
/// (rotary half-split, GQA, scores scaled by query_pre_attn_scalar^-1/2 and soft-capped, a sliding
/// window on windowed layers) -> RMSNorm -> residual; RMSNorm -> GeGLU MLP (tanh GELU) -> RMSNorm
/// -> residual; final RMSNorm, the tied head, final soft-capping. The `(1 + w)` of each norm is
/// taken once at load (the norm vectors are small f32 copies), so the pass uses plain RMSNorm.
public final class Gemma2Model: CausalLM, @unchecked Sendable {
    public let spec: ModelSpec
    let config: Gemma2Config

    struct Layer {
        /// [hidden] each, already 1 + w
        let inputNorm: Tensor, postAttnNorm: Tensor, preFFNorm: Tensor, postFFNorm: Tensor
        /// [heads * headDim, hidden]
        let q: WeightMatrix
        /// [kvHeads * headDim, hidden]
        let k: WeightMatrix, v: WeightMatrix
        /// [hidden, heads * headDim]
        let o: WeightMatrix
        /// [intermediate, hidden]
        let gate: WeightMatrix, up: WeightMatrix
        /// [hidden, intermediate]
        let down: WeightMatrix
        /// how this layer attends (its window: 0 on full layers)
        let attention: AttentionSettings
        /// Gemma-3: [headDim] each, already 1 + w
        let qNorm: Tensor?, kNorm: Tensor?
    }

    /// [vocab, hidden]
    let embed: Tensor
    let layers: [Layer]
    /// [hidden], 1 + w
    let norm: Tensor
    /// [vocab, hidden] (the embedding when tied)
    let lmHead: WeightMatrix
    /// the full-attention layers' rotation, and the sliding layers' (the same one for Gemma-2)
    let rope: RoPE, slidingRope: RoPE
    public let maxRows: Int
    /// the forward pass's buffers (per cache, or shared under a lock)
    private let buffers: ForwardBuffers
    let store: WeightStore

    public init(config: Gemma2Config, store: WeightStore, maxRows: Int = 512) throws {
        self.config = config
        self.spec = config.spec
        self.maxRows = maxRows
        self.store = store
        let w = WeightLoader(store: store)
        let h = config.hiddenSize, hd = config.headDim
        func onePlus(_ t: Tensor) -> Tensor {
            if config.normWeightsIncludeOne { return t }
            for i in 0..<t.count { t.f32[i] += 1 }
            return t
        }
        // names and shapes from the architecture's tensor table, under the checkpoint's prefix
        let names = config.names
        let tl = WeightLoader(store: store, table: ModelRegistry.architecture(named: config.architecture)?.tensors ?? Gemma2Architecture.tensors,
                              dims: TensorDims(config.spec), prefix: names.model)
        embed = try tl.weight(.tokenEmbedding)
        layers = try (0..<config.layers).map { i in
            func lin(_ role: TensorRole) throws -> WeightMatrix { WeightMatrix(try tl.weight(role, layer: i)) }
            func nrm(_ role: TensorRole) throws -> Tensor { onePlus(try tl.norm(role, layer: i)) }
            return Layer(inputNorm: try nrm(.attentionNorm), postAttnNorm: try nrm(.attentionPostNorm),
                         preFFNorm: try nrm(.mlpNorm), postFFNorm: try nrm(.mlpPostNorm),
                         q: try lin(.attentionQuery), k: try lin(.attentionKey), v: try lin(.attentionValue), o: try lin(.attentionOutput),
                         gate: try lin(.mlpGate), up: try lin(.mlpUp), down: try lin(.mlpDown),
                         attention: AttentionSettings(heads: config.heads, kvHeads: config.kvHeads, headDim: hd,
                                                      scale: 1 / Float(config.queryPreAttnScalar).squareRoot(), softcap: Float(config.attnSoftcap ?? 0),
                                                      window: config.slidingLayers[i] ? (config.slidingWindow ?? 0) : 0),
                         qNorm: config.qkNorm ? try nrm(.attentionQueryNorm) : nil, kNorm: config.qkNorm ? try nrm(.attentionKeyNorm) : nil)
        }
        norm = onePlus(try tl.norm(.finalNorm))
        if !config.tieEmbeddings {  // tied: the embedding, whatever an lm_head.weight holds (transformers ties them)
            lmHead = WeightMatrix(try w.tensor(names.lmHead, [config.vocabSize, h]))
        } else {
            lmHead = WeightMatrix(embed)
        }
        buffers = ForwardBuffers(spec: spec, maxRows: maxRows, matrices: layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } + [lmHead], store: store)
        func rotation(_ r: RopeSettings) -> RoPE {
            if case let .linear(f) = r.kind { return RoPE(headDim: hd, theta: Float(r.theta), layout: .halfSplit, scaling: .linear(factor: Float(f))) }
            return RoPE(headDim: hd, theta: Float(r.theta), layout: .halfSplit)
        }
        rope = rotation(config.rope)
        slidingRope = config.slidingRope.map(rotation) ?? rope
    }

    public var workspaceBytes: Int { buffers.bytes }

    public func forward(_ tokens: UnsafeBufferPointer<Int32>, layout: BatchLayout, kv: KVStorage) throws -> UnsafeBufferPointer<Float> {
        try checkTokens(tokens)
        let ws = buffers.begin(kv)
        defer { buffers.end(kv) }
        let c = config
        try ws.prepare(layout, tokens: tokens.count, maxPositions: spec.maxPositions)
        let h = c.hiddenSize, hd = c.headDim, nh = c.heads, kvh = c.kvHeads, kvDim = kvh * hd, ff = c.intermediateSize
        let eps = Float(c.rmsNormEps), vocab = c.vocabSize
        let r = tokens.count
        let conv = ws.convertScratch
        let x = ws.x.f32, xn = ws.xn.f32, q = ws.q.f32, attn = ws.attn.f32, kNew = ws.k.f32, vNew = ws.v.f32
        let stage = layout.layers(of: layers.count)
        if !layout.startFromStageInput(x, rows: r, width: h) {
            Ops.embedding(table: embed.rawPointer, dtype: embed.dtype, vocab: vocab, dim: h, ids: tokens, x)
            Ops.scale(x, Float(Double(h).squareRoot()), x, count: r * h)  // transformers: hidden ** 0.5 as an f32 tensor
        }
        ws.noteLayer(-1, x, count: r * h)
        try ws.positions.withUnsafeBufferPointer { pos in
            for l in stage {
                let L = layers[l]
                try store.acquire(layer: l)
                defer { store.release(layer: l) }
                Ops.rmsNorm(x, weight: L.inputNorm.f32, eps: eps, xn, rows: r, n: h)
                WeightMatrix.applyGroup(xn, rows: r, (L.q, q), (L.k, kNew), (L.v, vNew), scratch: conv)
                if let qn = L.qNorm, let kn = L.kNorm {  // Gemma-3: per head, in place: rows of headDim
                    Ops.rmsNorm(q, weight: qn.f32, eps: eps, q, rows: r * nh, n: hd)
                    Ops.rmsNorm(kNew, weight: kn.f32, eps: eps, kNew, rows: r * kvh, n: hd)
                }
                let rot = c.slidingLayers[l] ? slidingRope : rope
                rot.apply(q, tokens: r, heads: nh, positions: pos)
                rot.apply(kNew, tokens: r, heads: kvh, positions: pos)
                kv.write(layer: l, layout: layout, k: kNew, ldk: kvDim, v: vNew, ldv: kvDim)
                kv.attend(layer: l, layout: layout, q: q, ldq: nh * hd, out: attn, ldo: nh * hd, attention: L.attention)
                // the attention output is normed before the residual add: through xn
                L.o.apply(attn, rows: r, xn, scratch: conv)
                Ops.rmsNorm(xn, weight: L.postAttnNorm.f32, eps: eps, xn, rows: r, n: h)
                Ops.add(x, xn, x, count: r * h)
                Ops.rmsNorm(x, weight: L.preFFNorm.f32, eps: eps, xn, rows: r, n: h)
                WeightMatrix.applyGroup(xn, rows: r, (L.gate, ws.ffA.f32), (L.up, ws.ffB.f32), scratch: conv)
                Ops.geglu(ws.ffA.f32, ws.ffB.f32, count: r * ff)
                L.down.apply(ws.ffA.f32, rows: r, xn, scratch: conv)
                Ops.rmsNorm(xn, weight: L.postFFNorm.f32, eps: eps, xn, rows: r, n: h)
                Ops.add(x, xn, x, count: r * h)
                ws.noteLayer(l, x, count: r * h)
            }
        }
        if stage.upperBound < layers.count { return UnsafeBufferPointer(start: x, count: r * h) }
        let n = ws.gatherLogitRows(layout, from: x, to: xn, width: h)
        if n == 0 { return UnsafeBufferPointer(start: ws.logits.f32, count: 0) }
        Ops.rmsNorm(xn, weight: norm.f32, eps: eps, xn, rows: n, n: h)
        if layout.hiddenStates { return UnsafeBufferPointer(start: xn, count: n * h) }
        lmHead.apply(xn, rows: n, ws.logits.f32, scratch: conv)
        if let cap = c.finalSoftcap {
            let capF = Float(cap), inv = 1 / capF, lp = ws.logits.f32
            for i in 0..<(n * vocab) { lp[i] = tanhf(lp[i] * inv) * capF }
        }
        return UnsafeBufferPointer(start: ws.logits.f32, count: n * vocab)
    }
}

/// `Gemma2ForCausalLM` (Gemma 2): the Llama family's tensor names plus the pre/post
/// feed-forward norms (`LlamaFamily.table(gemmaNorms:)`).
public enum Gemma2Architecture: Architecture {
    public static let name = "Gemma2ForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(Gemma2Config.self).spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try Gemma2Model(config: config.decode(Gemma2Config.self), store: store)
    }
    public static let tensors = LlamaFamily.table(qkvBias: .none, otherBias: .none, gemmaNorms: true)
    public static var ggufArchitecture: String? { "gemma2" }
    public static var ggufWeightLayout: WeightLayout { .normWeightsIncludeOne }
    /// llama.cpp stores Gemma's norms as 1 + w, and scales queries by head_dim^-1/2 (27B, with 46
    /// layers: (hidden / heads)^-1/2), as transformers' `query_pre_attn_scalar` of those models.
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        var f = try gemmaFields(h, largestLayers: 46)
        f["attn_logit_softcapping"] = try h.double("attn_logit_softcapping") ?? NSNull()
        f["final_logit_softcapping"] = try h.double("final_logit_softcapping") ?? NSNull()
        return f
    }

    /// The Gemma family's GGUF fields: the Llama family's, the sliding window, and queries scaled
    /// by head_dim^-1/2, except in the largest model (`largestLayers` layers: (hidden / heads)^-1/2)
    /// as llama.cpp reads them.
    static func gemmaFields(_ h: GGUFHyperparameters, largestLayers: Int) throws -> [String: Any] {
        var f = try h.llamaFamilyFields()
        let hidden = f["hidden_size"] as! Int, heads = f["num_attention_heads"] as! Int, headDim = f["head_dim"] as! Int
        f["query_pre_attn_scalar"] = (f["num_hidden_layers"] as! Int) == largestLayers ? hidden / heads : headDim
        if let w = try h.int("attention.sliding_window") { f["sliding_window"] = w }
        return f
    }
    public static func synthConfig(_ s: SynthShape) -> [String: Any] {
        var c = LlamaFamily.synthConfig(s, architecture: name, modelType: "gemma2")
        c["hidden_act"] = nil
        c["hidden_activation"] = "gelu_pytorch_tanh"
        return c
    }
}
