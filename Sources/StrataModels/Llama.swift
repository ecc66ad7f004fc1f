import Foundation
import StrataFormats
import StrataTensor

/// The Llama family's configuration (Llama 2/3, TinyLlama, SmolLM; Qwen2 and Mistral decode
/// into it from their own files with their own defaults). Keys are the HF `config.json` names.
public struct LlamaFamilyConfig: Sendable {
    /// Defaults as `transformers` has them, per architecture.
    public struct Defaults: Sendable {
        var architecture: String
        var vocabSize: Int
        var maxPositions: Int
        var ropeTheta: Double
        var rmsNormEps: Double
        var tieEmbeddings: Bool
        var bos: [Int]
        var eos: [Int]
        /// Qwen2: q/k/v always carry a bias, o does not.
        var qkvBias: Bool
        /// Qwen3: an RMSNorm over each head of q and of k (`q_norm`, `k_norm`) before RoPE.
        var qkNorm: Bool = false
        /// head_dim when config.json has none (Qwen3: 128; others: hidden / heads).
        var headDim: Int? = nil
        /// Phi-3: q, k, v in one `qkv_proj` and gate, up in one `gate_up_proj` (rows stacked).
        var fused: Bool = false
        /// Whether the architecture applies config.json's `sliding_window` (Mistral, Phi-3, Qwen2/3
        /// with `use_sliding_window`); transformers' Llama ignores the key, and so does Strata.
        var slidingWindow: Bool = true
        /// A mixture of experts (Qwen3-MoE, Mixtral): how its experts are read.
        var moe: MoEConfig.Defaults? = nil
    }

    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var rope: RopeSettings
    public var tieEmbeddings: Bool
    /// Bias on q, k, v projections.
    public var qkvBias: Bool
    /// RMSNorm over each head of q and k before RoPE (Qwen3).
    public var qkNorm: Bool
    /// q|k|v in `self_attn.qkv_proj` and gate|up in `mlp.gate_up_proj`, rows stacked (Phi-3).
    public var fused: Bool
    /// Bias on the o projection.
    public var oBias: Bool
    public var mlpBias: Bool
    public var maxPositions: Int
    /// Mistral's sliding window; the cache is capped at it so results stay exact (unless
    /// `slidingLayers` says which layers slide: gpt-oss).
    public var slidingWindow: Int?
    /// Which layers attend over `slidingWindow` keys, the others over all (gpt-oss's `layer_types`);
    /// nil: every layer as `slidingWindow` says.
    public var slidingLayers: [Bool]?
    /// Attention sinks in every layer (gpt-oss: `self_attn.sinks`, a logit per head).
    public var sinks = false
    public var bos: [Int]
    public var eos: [Int]
    /// Q and K rows in RoPE's interleaved layout (a GGUF of llama.cpp's converter).
    public var ropeInterleaved: Bool
    /// The routed experts (nil: every layer's MLP is dense).
    public var moe: MoEConfig?

    enum Keys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers", heads = "num_attention_heads", kvHeads = "num_key_value_heads"
        case headDim = "head_dim", rmsNormEps = "rms_norm_eps", tie = "tie_word_embeddings"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", maxPositions = "max_position_embeddings"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window"
        case bos = "bos_token_id", eos = "eos_token_id", hiddenAct = "hidden_act"
    }

    public init(from decoder: Decoder, defaults d: Defaults) throws {
        let file = decoder.userInfo[configFileKey] as? String ?? "config.json"
        let c = try decoder.container(keyedBy: Keys.self)
        architecture = d.architecture
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
        func positive(_ v: Int, _ field: String) throws {
            if v <= 0 { throw ConfigError.invalidValue(file: file, field: field, reason: "must be positive, got \(v)") }
        }
        try positive(vocabSize, "vocab_size"); try positive(hiddenSize, "hidden_size")
        try positive(intermediateSize, "intermediate_size"); try positive(layers, "num_hidden_layers")
        try positive(heads, "num_attention_heads"); try positive(kvHeads, "num_key_value_heads")
        if heads % kvHeads != 0 {
            throw ConfigError.invalidValue(file: file, field: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        if let hd = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim {
            try positive(hd, "head_dim"); headDim = hd
        } else {
            if hiddenSize % heads != 0 {
                throw ConfigError.invalidValue(file: file, field: "hidden_size", reason: "\(hiddenSize) not divisible by \(heads) heads and no head_dim")
            }
            headDim = hiddenSize / heads
        }
        if headDim % 2 != 0 { throw ConfigError.invalidValue(file: file, field: "head_dim", reason: "must be even for RoPE, got \(headDim)") }
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? d.rmsNormEps
        rope = try RopeSettings.decode(from: decoder, defaultTheta: d.ropeTheta, file: file)
        let rot = Int(Double(headDim) * rope.partialRotaryFactor)
        if rot < 2 || rot % 2 != 0 {
            throw ConfigError.invalidValue(file: file, field: "partial_rotary_factor", reason: "gives \(rot) rotary dimensions of \(headDim); must be even and >= 2")
        }
        if case let .longrope(short, _, _, _, _) = rope.kind, short.count != rot / 2 {
            throw ConfigError.invalidValue(file: file, field: "rope_scaling.short_factor", reason: "\(short.count) factors for \(rot / 2) rotary frequencies")
        }
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tie) ?? d.tieEmbeddings
        let attnBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        qkvBias = d.qkvBias || attnBias
        qkNorm = d.qkNorm
        fused = d.fused
        oBias = attnBias
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? d.maxPositions
        try positive(maxPositions, "max_position_embeddings")
        let useWindow = try d.slidingWindow && (c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? true)
        slidingWindow = useWindow ? try c.decodeIfPresent(Int.self, forKey: .slidingWindow) : nil
        bos = try c.decodeIfPresent(TokenIDs.self, forKey: .bos)?.ids ?? d.bos
        eos = try c.decodeIfPresent(TokenIDs.self, forKey: .eos)?.ids ?? d.eos
        ropeInterleaved = WeightLayout.of(decoder).contains(.ropeInterleaved)
        let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        if act != "silu" { throw ConfigError.invalidValue(file: file, field: "hidden_act", reason: "'\(act)' not supported (silu)") }
        moe = try d.moe.map { try MoEConfig(from: decoder, defaults: $0, layers: layers, intermediate: intermediateSize, file: file) }
    }

    /// The tensor table of the architecture this config is for (the registry's row; Llama's
    /// layout with this config's variations for a name the registry does not list).
    var tensors: TensorTable {
        ModelRegistry.architecture(named: architecture)?.tensors ?? LlamaFamily.table(qkNorm: qkNorm, fused: fused)
    }

    public var spec: ModelSpec {
        ModelSpec(architecture: architecture, vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                  layers: layers, heads: heads, kvHeads: kvHeads, headDim: headDim,
                  maxPositions: slidingLayers == nil ? min(maxPositions, slidingWindow ?? Int.max) : maxPositions, tiedEmbeddings: tieEmbeddings,
                  bosTokenIDs: bos, eosTokenIDs: eos, queryBufferWidth: heads * headDim, moe: moe?.shape)
    }

    /// Leading dimensions of each head that rotate: `int(headDim * partial_rotary_factor)`.
    public var rotaryDim: Int { Int(Double(headDim) * rope.partialRotaryFactor) }

    /// The rotary scaling of a forward call (for LongRoPE: the short factors).
    var ropeScaling: RoPE.Scaling {
        switch rope.kind {
        case .none: return .none
        case let .linear(f): return .linear(factor: Float(f))
        case let .llama3(f, lo, hi, orig): return .llama3(factor: Float(f), lowFreqFactor: Float(lo), highFreqFactor: Float(hi), originalMaxPositions: orig)
        case let .longrope(short, _, orig, factor, attention): return .perFrequency(divisors: short.map(Float.init), attentionScaling: longRopeAttention(orig, factor, attention))
        case let .yarn(factor, orig, fast, slow, truncate, attention, mscale, mscaleAll):
            return .yarn(factor: Float(factor), originalMaxPositions: orig, betaFast: fast, betaSlow: slow, truncate: truncate,
                         attentionScaling: Float(RopeSettings.yarnAttention(factor: factor, attention: attention, mscale: mscale, mscaleAllDim: mscaleAll)))
        }
    }

    /// LongRoPE: the scaling of a forward call whose positions reach past `originalMaxPositions`
    /// (the long factors), and that limit; nil for other rotary types.
    var longRopeScaling: (scaling: RoPE.Scaling, beyond: Int)? {
        guard case let .longrope(_, long, orig, factor, attention) = rope.kind else { return nil }
        return (.perFrequency(divisors: long.map(Float.init), attentionScaling: longRopeAttention(orig, factor, attention)), orig)
    }

    /// As transformers: `attention_factor`, else sqrt(1 + ln(factor) / ln(original)) with factor
    /// `factor` or max_position_embeddings / original (1 when factor <= 1).
    private func longRopeAttention(_ orig: Int, _ factor: Double?, _ attention: Double?) -> Float {
        if let attention { return Float(attention) }
        let f = factor ?? Double(maxPositions) / Double(orig)
        return f <= 1 ? 1 : Float((1 + log(f) / log(Double(orig))).squareRoot())
    }
}

/// `LlamaForCausalLM`'s `config.json`.
public struct LlamaConfig: Decodable, Sendable {
    public var family: LlamaFamilyConfig
    static let defaults = LlamaFamilyConfig.Defaults(
        architecture: "LlamaForCausalLM", vocabSize: 32000, maxPositions: 2048, ropeTheta: 10000, rmsNormEps: 1e-6,
        tieEmbeddings: false, bos: [1], eos: [2], qkvBias: false, slidingWindow: false)
    public init(from decoder: Decoder) throws { family = try LlamaFamilyConfig(from: decoder, defaults: Self.defaults) }
}

/// A Llama-family decoder: RMSNorm, rotary (half-split) attention with grouped KV heads,
/// SwiGLU MLP. Weights are views into the checkpoint (f16/bf16 converted at use).
public final class LlamaModel: CausalLM, ExpertServing, RoutingCounted, @unchecked Sendable {
    public let spec: ModelSpec
    let config: LlamaFamilyConfig

    struct Layer {
        /// [hidden]
        let inputNorm: Tensor
        /// [heads * headDim, hidden]
        let q: WeightMatrix
        /// [headDim] RMSNorm weight over each head of q, and of k (Qwen3), or nil
        let qNorm: Tensor?, kNorm: Tensor?
        /// [kvHeads * headDim, hidden]
        let k: WeightMatrix
        /// [kvHeads * headDim, hidden]
        let v: WeightMatrix
        /// [hidden, heads * headDim]
        let o: WeightMatrix
        /// [hidden]
        let postNorm: Tensor
        /// [intermediate, hidden] (nil in a layer of experts)
        let gate: WeightMatrix?
        /// [intermediate, hidden]
        let up: WeightMatrix?
        /// [hidden, intermediate]
        let down: WeightMatrix?
        /// the layer's mixture of experts, in place of the dense MLP
        let moe: MoELayer?
        var matrices: [WeightMatrix] { [q, k, v, o] + [gate, up, down].compactMap { $0 } + (moe?.matrices ?? []) }
    }

    /// [vocab, hidden]
    let embed: Tensor
    let layers: [Layer]
    /// [hidden]
    let norm: Tensor
    /// [vocab, hidden] (the embedding when tied)
    let lmHead: WeightMatrix
    let rope: RoPE
    /// LongRoPE: the rotation of a forward call whose positions reach past `beyond` (as
    /// transformers, which picks the long factors when max(position) + 1 > original_max).
    let longRope: (rope: RoPE, beyond: Int)?
    public let maxRows: Int
    /// the forward pass's buffers (per cache, or shared under a lock)
    private let buffers: ForwardBuffers

    public static let architectures = ["LlamaForCausalLM"]

    let store: WeightStore
    /// How each layer attends (its window where `slidingLayers` says, its sinks)
    let attentions: [AttentionSettings]

    public init(config: LlamaFamilyConfig, store: WeightStore, maxRows: Int = 512) throws {
        self.config = config
        self.spec = config.spec
        self.maxRows = maxRows
        self.store = store
        // names and shapes from the architecture's tensor table; which tensors exist from the config
        let w = WeightLoader(store: store, table: config.tensors, dims: TensorDims(config.spec))
        let hd = config.headDim, nh = config.heads, kvh = config.kvHeads, ff = config.intermediateSize
        attentions = try (0..<config.layers).map { i in
            let slides = config.slidingLayers?[i] ?? false
            return AttentionSettings(heads: nh, kvHeads: kvh, headDim: hd, window: slides ? config.slidingWindow ?? 0 : 0,
                                     sinks: config.sinks ? try w.norm(.attentionSinks, layer: i).toArray() : [])
        }
        embed = try w.weight(.tokenEmbedding)
        layers = try (0..<config.layers).map { i in
            func lin(_ role: TensorRole, bias: Bool) throws -> WeightMatrix {
                WeightMatrix(try w.weight(role, layer: i), bias: bias ? try w.bias(role, layer: i) : nil)
            }
            let q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, gate: WeightMatrix?, up: WeightMatrix?
            let sparse = config.moe?.shape.sparseLayers[i] ?? false
            if config.fused {
                // Phi-3: row ranges of the stacked matrices, views (nothing copied)
                let qkv = try w.weight(.attentionQKV, layer: i)
                q = WeightMatrix(qkv.slice(0..<(nh * hd)))
                k = WeightMatrix(qkv.slice((nh * hd)..<((nh + kvh) * hd)))
                v = WeightMatrix(qkv.slice(((nh + kvh) * hd)..<((nh + 2 * kvh) * hd)))
                let gu = try w.weight(.mlpGateUp, layer: i)
                gate = WeightMatrix(gu.slice(0..<ff))
                up = WeightMatrix(gu.slice(ff..<(2 * ff)))
            } else {
                q = try lin(.attentionQuery, bias: config.qkvBias)
                k = try lin(.attentionKey, bias: config.qkvBias)
                v = try lin(.attentionValue, bias: config.qkvBias)
                gate = sparse ? nil : try lin(.mlpGate, bias: config.mlpBias)
                up = sparse ? nil : try lin(.mlpUp, bias: config.mlpBias)
            }
            return Layer(
                inputNorm: try w.norm(.attentionNorm, layer: i),
                q: q,
                qNorm: config.qkNorm ? try w.norm(.attentionQueryNorm, layer: i) : nil,
                kNorm: config.qkNorm ? try w.norm(.attentionKeyNorm, layer: i) : nil,
                k: k, v: v,
                o: try lin(.attentionOutput, bias: config.oBias),
                postNorm: try w.norm(.mlpNorm, layer: i),
                gate: gate, up: up,
                down: sparse ? nil : try lin(.mlpDown, bias: config.mlpBias),
                moe: sparse ? try MoELayer(w, layer: i, config: config.moe!) : nil)
        }
        norm = try w.norm(.finalNorm)
        // tied: the embedding, even when the checkpoint also holds an lm_head.weight (transformers
        // ties the two and never reads it)
        if !config.tieEmbeddings {
            lmHead = WeightMatrix(try w.weight(.outputHead))
        } else {
            lmHead = WeightMatrix(embed)
        }
        buffers = ForwardBuffers(spec: spec, maxRows: maxRows, matrices: layers.flatMap(\.matrices) + [lmHead], store: store)
        rope = RoPE(headDim: hd, rotaryDim: config.rotaryDim, theta: Float(config.rope.theta), layout: config.ropeInterleaved ? .interleaved : .halfSplit, scaling: config.ropeScaling)
        if let long = config.longRopeScaling {
            longRope = (RoPE(headDim: hd, rotaryDim: config.rotaryDim, theta: Float(config.rope.theta), layout: config.ropeInterleaved ? .interleaved : .halfSplit, scaling: long.scaling), long.beyond)
        } else {
            longRope = nil
        }
    }

    public var workspaceBytes: Int { buffers.bytes }

    /// Buffers for other processes' expert requests (apart from the passes', which may be under way).
    private var serviceWorkspace: Workspace?

    public var routingCounts: (tokens: Int, layers: [[Int]]) {
        let each = layers.map { $0.moe?.tally.snapshot }
        return (each.compactMap { $0?.rows }.max() ?? 0, each.map { $0?.counts ?? [] })
    }
    public func resetRoutingCounts() { for l in layers { l.moe?.tally.reset() } }

    public var maxExpertRows: Int { maxRows * (config.moe?.shape.expertsPerToken ?? 1) }

    /// Makes the buffers requests run in (at load: made at a first request, their pages would be
    /// cleared inside the pass that waits for it): the experts' MLP buffers, a conversion band
    /// for an expert's matrices, no logits or attention.
    public func prepareExpertService() {
        guard serviceWorkspace == nil, let shape = config.moe?.shape else { return }
        let s = spec
        serviceWorkspace = Workspace(maxRows: maxRows, hidden: s.hiddenSize, qWidth: 1, kvDim: 1, attnWidth: 1, ffn: Workspace.ffnWidth(s), vocab: 1,
                                     convertElements: WeightMatrix.scratchElements(dtype: buffers.weightDType, largest: 2 * s.hiddenSize * shape.intermediate),
                                     moe: shape)
    }

    public func serveExperts(layer: Int, experts: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>, rows: UnsafePointer<Float>,
                             out: UnsafeMutablePointer<Float>) throws {
        guard layer >= 0, layer < layers.count, let moe = layers[layer].moe else {
            throw ModelError.badRequest("expert request for layer \(layer), which has no experts")
        }
        var total = 0
        for (i, e) in experts.enumerated() {
            guard e >= 0, Int(e) < moe.count, counts[i] >= 1, counts[i] <= maxRows, i == 0 || experts[i - 1] < e else {
                throw ModelError.badRequest("expert request: expert \(e) of \(moe.count) with \(counts[i]) rows")
            }
            total += Int(counts[i])
        }
        guard total <= maxExpertRows else { throw ModelError.badRequest("expert request of \(total) rows (at most \(maxExpertRows))") }
        prepareExpertService()
        moe.serve(experts: experts, counts: counts, rows: rows, out: out, ws: serviceWorkspace!)
    }

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
        }
        ws.noteLayer(-1, x, count: r * h)
        try ws.positions.withUnsafeBufferPointer { pos in
            var rope = self.rope
            if let long = longRope {
                var top: Int32 = 0
                for i in 0..<r { top = max(top, pos[i]) }
                if Int(top) + 1 > long.beyond { rope = long.rope }
            }
            for l in stage {
                let L = layers[l]
                try store.acquire(layer: l)
                defer { store.release(layer: l) }
                Ops.rmsNorm(x, weight: L.inputNorm.f32, eps: eps, xn, rows: r, n: h)
                WeightMatrix.applyGroup(xn, rows: r, (L.q, q), (L.k, kNew), (L.v, vNew), scratch: conv)
                if let qn = L.qNorm, let kn = L.kNorm {  // per head, in place: rows of headDim
                    Ops.rmsNorm(q, weight: qn.f32, eps: eps, q, rows: r * nh, n: hd)
                    Ops.rmsNorm(kNew, weight: kn.f32, eps: eps, kNew, rows: r * kvh, n: hd)
                }
                rope.apply(q, tokens: r, heads: nh, positions: pos)
                rope.apply(kNew, tokens: r, heads: kvh, positions: pos)
                kv.write(layer: l, layout: layout, k: kNew, ldk: kvDim, v: vNew, ldv: kvDim)
                kv.attend(layer: l, layout: layout, q: q, ldq: nh * hd, out: attn, ldo: nh * hd, attention: attentions[l])
                L.o.apply(attn, rows: r, x, accumulate: true, scratch: conv)
                Ops.rmsNorm(x, weight: L.postNorm.f32, eps: eps, xn, rows: r, n: h)
                if let moe = L.moe {
                    try moe.apply(xn, rows: r, into: x, ws: ws)
                } else if let gate = L.gate, let up = L.up, let down = L.down {
                    WeightMatrix.applyGroup(xn, rows: r, (gate, ws.ffA.f32), (up, ws.ffB.f32), scratch: conv)
                    Ops.swiglu(ws.ffA.f32, ws.ffB.f32, count: r * ff)
                    down.apply(ws.ffA.f32, rows: r, x, accumulate: true, scratch: conv)
                }
                ws.noteLayer(l, x, count: r * h)
            }
        }
        if stage.upperBound < layers.count { return UnsafeBufferPointer(start: x, count: r * h) }
        let n = ws.gatherLogitRows(layout, from: x, to: xn, width: h)
        if n == 0 { return UnsafeBufferPointer(start: ws.logits.f32, count: 0) }
        Ops.rmsNorm(xn, weight: norm.f32, eps: eps, xn, rows: n, n: h)
        if layout.hiddenStates { return UnsafeBufferPointer(start: xn, count: n * h) }
        lmHead.apply(xn, rows: n, ws.logits.f32, scratch: conv)
        return UnsafeBufferPointer(start: ws.logits.f32, count: n * vocab)
    }
}

/// The Llama family's checkpoint layout (Llama, Qwen2, Qwen3, Mistral, Phi-3 and Gemma build on
/// it): its tensor table, and the config `synth` writes. Each architecture of the family conforms
/// to `LlamaFamilyArchitecture` in its own file through these.
public enum LlamaFamily {
    /// The HF names of a mixture's router and experts (`{e}`: the expert's index).
    public struct ExpertNames: Sendable {
        var router: String, gate: String, up: String, down: String
        /// Qwen3-MoE's (and Qwen2-MoE's, OLMoE's)
        public static let mlp = ExpertNames(router: "mlp.gate", gate: "mlp.experts.{e}.gate_proj", up: "mlp.experts.{e}.up_proj",
                                            down: "mlp.experts.{e}.down_proj")
        /// Mixtral's: w1 gate, w3 up, w2 down
        public static let mixtral = ExpertNames(router: "block_sparse_moe.gate", gate: "block_sparse_moe.experts.{e}.w1",
                                                up: "block_sparse_moe.experts.{e}.w3", down: "block_sparse_moe.experts.{e}.w2")
    }

    /// The family's tensors: `bias` on q, k, v (Qwen2 always; Llama where `attention_bias` says),
    /// `qkNorm` (Qwen3's per-head norms of q and k), `fused` (Phi-3's qkv_proj and gate_up_proj),
    /// `extra` rows after the attention's output (Gemma's norms).
    public static func table(qkvBias: TensorRow.Bias = .optional, otherBias: TensorRow.Bias = .optional, qkNorm: Bool = false,
                             fused: Bool = false, gemmaNorms: Bool = false, experts: ExpertNames? = nil) -> TensorTable {
        var r: [TensorRow] = [
            TensorRow(.tokenEmbedding, hf: "embed_tokens", gguf: "token_embd", .global) { [$0.vocab, $0.hidden] },
            TensorRow(.attentionNorm, hf: "input_layernorm", gguf: "attn_norm") { [$0.hidden] },
        ]
        if fused {
            r.append(TensorRow(.attentionQKV, hf: "self_attn.qkv_proj", gguf: "attn_qkv") { [$0.qDim + 2 * $0.kvDim, $0.hidden] })
        } else {
            r.append(TensorRow(.attentionQuery, hf: "self_attn.q_proj", gguf: "attn_q", bias: qkvBias) { [$0.qDim, $0.hidden] })
            r.append(TensorRow(.attentionKey, hf: "self_attn.k_proj", gguf: "attn_k", bias: qkvBias) { [$0.kvDim, $0.hidden] })
            r.append(TensorRow(.attentionValue, hf: "self_attn.v_proj", gguf: "attn_v", bias: qkvBias) { [$0.kvDim, $0.hidden] })
        }
        r.append(TensorRow(.attentionOutput, hf: "self_attn.o_proj", gguf: "attn_output", bias: fused ? .none : otherBias) { [$0.hidden, $0.qDim] })
        if qkNorm {
            r.append(TensorRow(.attentionQueryNorm, hf: "self_attn.q_norm", gguf: "attn_q_norm") { [$0.headDim] })
            r.append(TensorRow(.attentionKeyNorm, hf: "self_attn.k_norm", gguf: "attn_k_norm") { [$0.headDim] })
        }
        if gemmaNorms {
            // Gemma: a norm after the attention, and before and after the MLP (llama.cpp's ffn_norm is the one before)
            r.append(TensorRow(.attentionPostNorm, hf: "post_attention_layernorm", gguf: "post_attention_norm") { [$0.hidden] })
            r.append(TensorRow(.mlpNorm, hf: "pre_feedforward_layernorm", gguf: "ffn_norm") { [$0.hidden] })
            r.append(TensorRow(.mlpPostNorm, hf: "post_feedforward_layernorm", gguf: "post_ffw_norm") { [$0.hidden] })
        } else {
            r.append(TensorRow(.mlpNorm, hf: "post_attention_layernorm", gguf: "ffn_norm") { [$0.hidden] })
        }
        if fused {
            r.append(TensorRow(.mlpGateUp, hf: "mlp.gate_up_proj", gguf: "ffn_up") { [2 * $0.intermediate, $0.hidden] })
        } else {
            r.append(TensorRow(.mlpGate, hf: "mlp.gate_proj", gguf: "ffn_gate", bias: otherBias) { [$0.intermediate, $0.hidden] })
            r.append(TensorRow(.mlpUp, hf: "mlp.up_proj", gguf: "ffn_up", bias: otherBias) { [$0.intermediate, $0.hidden] })
        }
        r.append(TensorRow(.mlpDown, hf: "mlp.down_proj", gguf: "ffn_down", bias: fused ? .none : otherBias) { [$0.hidden, $0.intermediate] })
        if let x = experts {
            // llama.cpp: the router ffn_gate_inp, each layer's experts stacked in ffn_*_exps
            r.append(TensorRow(.router, hf: x.router, gguf: "ffn_gate_inp") { [$0.experts, $0.hidden] })
            r.append(TensorRow(.expertGate, hf: x.gate, gguf: "ffn_gate_exps", .expert) { [$0.expertIntermediate, $0.hidden] })
            r.append(TensorRow(.expertUp, hf: x.up, gguf: "ffn_up_exps", .expert) { [$0.expertIntermediate, $0.hidden] })
            r.append(TensorRow(.expertDown, hf: x.down, gguf: "ffn_down_exps", .expert) { [$0.hidden, $0.expertIntermediate] })
        }
        r.append(TensorRow(.finalNorm, hf: "norm", gguf: "output_norm", .global) { [$0.hidden] })
        r.append(TensorRow(.outputHead, hf: "lm_head", gguf: "output", .global) { [$0.vocab, $0.hidden] })
        return TensorTable(r)
    }

    public static func synthConfig(_ s: SynthShape, architecture: String, modelType: String) -> [String: Any] {
        let eos = s.vocab - 1
        var c: [String: Any] = [
            "architectures": [architecture], "model_type": modelType,
            "vocab_size": s.vocab, "hidden_size": s.hidden, "intermediate_size": s.intermediate, "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads, "num_key_value_heads": s.kvHeads, "max_position_embeddings": s.maxPositions,
            "rms_norm_eps": s.rmsEps, "rope_theta": s.ropeTheta, "tie_word_embeddings": s.tied, "hidden_act": "silu",
            "bos_token_id": eos, "eos_token_id": eos, "strata_synthetic": true,
        ]
        for (k, v) in s.extraFields { c[k] = v }
        return c
    }
}

/// `LlamaForCausalLM` (Llama 2/3, TinyLlama, SmolLM).
public enum LlamaArchitecture: LlamaFamilyArchitecture {
    public static let name = "LlamaForCausalLM"
    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(LlamaConfig.self).family.spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try LlamaModel(config: config.decode(LlamaConfig.self).family, store: store)
    }
    public static let tensors = LlamaFamily.table()
    public static func synthConfig(_ shape: SynthShape) -> [String: Any] { LlamaFamily.synthConfig(shape, architecture: name, modelType: "llama") }
    public static var ggufArchitecture: String? { "llama" }
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? {
        try config.decode(LlamaConfig.self).family.ggufExport(arch: "llama", permute: true)
    }
    /// llama.cpp's converter permutes Llama's Q and K rows into RoPE's interleaved layout.
    public static var ggufWeightLayout: WeightLayout { .ropeInterleaved }
}
