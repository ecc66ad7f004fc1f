import Foundation
import StrataFormats
import StrataTensor

/// `GPT2LMHeadModel`'s `config.json` (HF names: n_embd, n_layer, n_head, ...).
public struct GPT2Config: Decodable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var innerSize: Int
    public var maxPositions: Int
    public var layerNormEps: Double
    public var activation: String
    public var bos: [Int]
    public var eos: [Int]
    /// The Conv1D weights are stored `[out, in]` (a GGUF of llama.cpp's converter, which transposes them).
    public var linearOutIn: Bool
    /// `tie_word_embeddings` (default true): the head is `wte`, whatever `lm_head.weight` holds.
    public var tieEmbeddings: Bool

    enum Keys: String, CodingKey {
        case vocabSize = "vocab_size", nEmbd = "n_embd", nLayer = "n_layer", nHead = "n_head", nInner = "n_inner"
        case nPositions = "n_positions", eps = "layer_norm_epsilon", act = "activation_function"
        case bos = "bos_token_id", eos = "eos_token_id", scaleByLayer = "scale_attn_by_inverse_layer_idx"
        case scaleWeights = "scale_attn_weights", tie = "tie_word_embeddings"
    }

    public init(from decoder: Decoder) throws {
        let file = decoder.userInfo[configFileKey] as? String ?? "config.json"
        let c = try decoder.container(keyedBy: Keys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50257
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? 768
        layers = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? 12
        heads = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? 12
        innerSize = try c.decodeIfPresent(Int.self, forKey: .nInner) ?? 4 * hiddenSize
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? 1024
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? 1e-5
        activation = try c.decodeIfPresent(String.self, forKey: .act) ?? "gelu_new"
        bos = try c.decodeIfPresent(TokenIDs.self, forKey: .bos)?.ids ?? [50256]
        eos = try c.decodeIfPresent(TokenIDs.self, forKey: .eos)?.ids ?? [50256]
        linearOutIn = WeightLayout.of(decoder).contains(.linearOutIn)
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tie) ?? true
        for (v, f) in [(vocabSize, "vocab_size"), (hiddenSize, "n_embd"), (layers, "n_layer"), (heads, "n_head"),
                       (innerSize, "n_inner"), (maxPositions, "n_positions")] where v <= 0 {
            throw ConfigError.invalidValue(file: file, field: f, reason: "must be positive, got \(v)")
        }
        if hiddenSize % heads != 0 { throw ConfigError.invalidValue(file: file, field: "n_head", reason: "\(heads) does not divide n_embd \(hiddenSize)") }
        if !["gelu_new", "gelu", "gelu_pytorch_tanh"].contains(activation) {
            throw ConfigError.invalidValue(file: file, field: "activation_function", reason: "'\(activation)' not supported")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .scaleByLayer) == true {
            throw ConfigError.invalidValue(file: file, field: "scale_attn_by_inverse_layer_idx", reason: "true is not supported")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .scaleWeights) == false {
            throw ConfigError.invalidValue(file: file, field: "scale_attn_weights", reason: "false is not supported")
        }
    }

    public var spec: ModelSpec {
        ModelSpec(architecture: "GPT2LMHeadModel", vocabSize: vocabSize, hiddenSize: hiddenSize, intermediateSize: innerSize,
                  layers: layers, heads: heads, kvHeads: heads, headDim: hiddenSize / heads, maxPositions: maxPositions,
                  tiedEmbeddings: tieEmbeddings, bosTokenIDs: bos, eosTokenIDs: eos, queryBufferWidth: 3 * hiddenSize)
    }
}

/// GPT-2: learned positions, pre-LayerNorm blocks, fused qkv `Conv1D` (weights `[in, out]`),
/// GELU (tanh form for `gelu_new`), the LM head tied to the token embedding.
public final class GPT2Model: CausalLM, @unchecked Sendable {
    public let spec: ModelSpec
    let config: GPT2Config

    struct Layer {
        /// [hidden] x2
        let ln1w: Tensor, ln1b: Tensor
        /// [hidden, 3 * hidden] (Conv1D)
        let qkv: WeightMatrix
        /// [hidden, hidden] (Conv1D)
        let proj: WeightMatrix
        /// [hidden] x2
        let ln2w: Tensor, ln2b: Tensor
        /// [hidden, inner] (Conv1D)
        let fc: WeightMatrix
        /// [inner, hidden] (Conv1D)
        let fcProj: WeightMatrix
    }

    /// [vocab, hidden]
    let wte: Tensor
    /// [maxPositions, hidden]
    let wpe: Tensor
    let layers: [Layer]
    /// [hidden] x2
    let lnfw: Tensor, lnfb: Tensor
    let lmHead: WeightMatrix
    public let maxRows: Int
    /// [maxRows, hidden] position rows
    private var posRows: Tensor
    /// the forward pass's buffers (per cache, or shared under a lock)
    private let buffers: ForwardBuffers

    public static let architectures = ["GPT2LMHeadModel"]

    let store: WeightStore
    /// How every layer attends
    let attention: AttentionSettings

    public init(config: GPT2Config, store: WeightStore, maxRows: Int = 512) throws {
        self.config = config
        spec = config.spec
        self.maxRows = maxRows
        self.store = store
        let h = config.hiddenSize
        // names and shapes from the tensor table; hub checkpoints name tensors "h.0..." or "transformer.h.0..."
        let prefix = store.contains("transformer.wte.weight") ? "transformer." : ""
        let w = WeightLoader(store: store, table: GPT2Architecture.tensors, dims: TensorDims(config.spec), prefix: prefix)
        wte = try w.weight(.tokenEmbedding)
        wpe = try w.weight(.positionEmbedding)
        layers = try (0..<config.layers).map { i in
            // Conv1D weights are [in, out]; a GGUF of llama.cpp's converter stores them [out, in]
            func conv(_ role: TensorRole) throws -> WeightMatrix {
                let s = w.shape(role), bias = try w.bias(role, layer: i)
                if config.linearOutIn {
                    return WeightMatrix(try w.tensor(w.name(role, layer: i), [s[1], s[0]], layer: i), layout: .outIn, bias: bias)
                }
                return WeightMatrix(try w.weight(role, layer: i), layout: .inOut, bias: bias)
            }
            return Layer(ln1w: try w.norm(.attentionNorm, layer: i), ln1b: try w.bias(.attentionNorm, layer: i),
                         qkv: try conv(.attentionQKV), proj: try conv(.attentionOutput),
                         ln2w: try w.norm(.mlpNorm, layer: i), ln2b: try w.bias(.mlpNorm, layer: i),
                         fc: try conv(.mlpUp), fcProj: try conv(.mlpDown))
        }
        lnfw = try w.norm(.finalNorm)
        lnfb = try w.bias(.finalNorm)
        lmHead = WeightMatrix(config.tieEmbeddings ? wte : try w.weight(.outputHead))
        posRows = Tensor(zeros: [maxRows, h])
        attention = AttentionSettings(heads: config.heads, kvHeads: config.heads, headDim: h / config.heads)
        buffers = ForwardBuffers(spec: spec, maxRows: maxRows, matrices: layers.flatMap { [$0.qkv, $0.proj, $0.fc, $0.fcProj] } + [lmHead], store: store)
    }

    public var workspaceBytes: Int { buffers.bytes }

    public func forward(_ tokens: UnsafeBufferPointer<Int32>, layout: BatchLayout, kv: KVStorage) throws -> UnsafeBufferPointer<Float> {
        try checkTokens(tokens)
        let ws = buffers.begin(kv)
        defer { buffers.end(kv) }
        let c = config
        try ws.prepare(layout, tokens: tokens.count, maxPositions: spec.maxPositions)
        let h = c.hiddenSize, vocab = c.vocabSize, inner = c.innerSize
        let eps = Float(c.layerNormEps)
        let erf = c.activation == "gelu"
        let r = tokens.count
        let conv = ws.convertScratch
        let x = ws.x.f32, xn = ws.xn.f32, qkv = ws.q.f32, attn = ws.attn.f32
        let stage = layout.layers(of: layers.count)
        if !layout.startFromStageInput(x, rows: r, width: h) {
            Ops.embedding(table: wte.rawPointer, dtype: wte.dtype, vocab: vocab, dim: h, ids: tokens, x)
            ws.positions.withUnsafeBufferPointer { pos in
                Ops.embedding(table: wpe.rawPointer, dtype: wpe.dtype, vocab: c.maxPositions, dim: h,
                              ids: UnsafeBufferPointer(rebasing: pos[0..<r]), posRows.f32)
            }
            Ops.add(x, posRows.f32, x, count: r * h)
        }
        ws.noteLayer(-1, x, count: r * h)
        for l in stage {
            let L = layers[l]
            try store.acquire(layer: l)
            defer { store.release(layer: l) }
            Ops.layerNorm(x, weight: L.ln1w.f32, bias: L.ln1b.f32, eps: eps, xn, rows: r, n: h)
            L.qkv.apply(xn, rows: r, qkv, scratch: conv)
            kv.write(layer: l, layout: layout, k: qkv + h, ldk: 3 * h, v: qkv + 2 * h, ldv: 3 * h)
            kv.attend(layer: l, layout: layout, q: qkv, ldq: 3 * h, out: attn, ldo: h, attention: attention)
            L.proj.apply(attn, rows: r, x, accumulate: true, scratch: conv)
            Ops.layerNorm(x, weight: L.ln2w.f32, bias: L.ln2b.f32, eps: eps, xn, rows: r, n: h)
            L.fc.apply(xn, rows: r, ws.ffA.f32, scratch: conv)
            if erf { Ops.geluErf(ws.ffA.f32, count: r * inner) } else { Ops.geluTanh(ws.ffA.f32, count: r * inner) }
            L.fcProj.apply(ws.ffA.f32, rows: r, x, accumulate: true, scratch: conv)
            ws.noteLayer(l, x, count: r * h)
        }
        if stage.upperBound < layers.count { return UnsafeBufferPointer(start: x, count: r * h) }
        let n = ws.gatherLogitRows(layout, from: x, to: xn, width: h)
        if n == 0 { return UnsafeBufferPointer(start: ws.logits.f32, count: 0) }
        Ops.layerNorm(xn, weight: lnfw.f32, bias: lnfb.f32, eps: eps, xn, rows: n, n: h)
        if layout.hiddenStates { return UnsafeBufferPointer(start: xn, count: n * h) }
        lmHead.apply(xn, rows: n, ws.logits.f32, scratch: conv)
        return UnsafeBufferPointer(start: ws.logits.f32, count: n * vocab)
    }
}

/// `GPT2LMHeadModel`: tensors named `h.N.` or `transformer.h.N.` (both occur on the hub),
/// Conv1D weights stored `[in, out]`, learned positions, the head tied to `wte`.
public enum GPT2Architecture: Architecture {
    public static let name = "GPT2LMHeadModel"
    /// Conv1D weights stored [in, out] (their biases along axis 1); llama.cpp's names beside.
    public static let tensors = TensorTable(prefixes: ["transformer.", ""], layerPrefix: "h.", [
        TensorRow(.tokenEmbedding, hf: "wte", gguf: "token_embd", .global) { [$0.vocab, $0.hidden] },
        TensorRow(.positionEmbedding, hf: "wpe", gguf: "position_embd", .global) { [$0.positions, $0.hidden] },
        TensorRow(.attentionNorm, hf: "ln_1", gguf: "attn_norm", bias: .always) { [$0.hidden] },
        TensorRow(.attentionQKV, hf: "attn.c_attn", gguf: "attn_qkv", bias: .always, outputAxis: 1) { [$0.hidden, 3 * $0.hidden] },
        TensorRow(.attentionOutput, hf: "attn.c_proj", gguf: "attn_output", bias: .always, outputAxis: 1) { [$0.hidden, $0.hidden] },
        TensorRow(.mlpNorm, hf: "ln_2", gguf: "ffn_norm", bias: .always) { [$0.hidden] },
        TensorRow(.mlpUp, hf: "mlp.c_fc", gguf: "ffn_up", bias: .always, outputAxis: 1) { [$0.hidden, $0.intermediate] },
        TensorRow(.mlpDown, hf: "mlp.c_proj", gguf: "ffn_down", bias: .always, outputAxis: 1) { [$0.intermediate, $0.hidden] },
        TensorRow(.finalNorm, hf: "ln_f", gguf: "output_norm", .global, bias: .always) { [$0.hidden] },
        TensorRow(.outputHead, hf: "lm_head", gguf: "output", .global) { [$0.vocab, $0.hidden] },
    ])

    public static func spec(config: ConfigFile) throws -> ModelSpec { try config.decode(GPT2Config.self).spec }
    public static func build(config: ConfigFile, store: WeightStore) throws -> CausalLM {
        try GPT2Model(config: config.decode(GPT2Config.self), store: store)
    }
    public static var ggufArchitecture: String? { "gpt2" }
    public static var ggufWeightLayout: WeightLayout { .linearOutIn }
    /// The converter transposes the Conv1D weights to `[out, in]`.
    public static func ggufConfig(_ h: GGUFHyperparameters) throws -> [String: Any] {
        let embd = try h.requireInt("embedding_length")
        var f: [String: Any] = ["vocab_size": try h.vocabSize(), "n_embd": embd, "n_layer": try h.requireInt("block_count"),
                                "n_head": try h.requireInt("attention.head_count"), "n_inner": try h.int("feed_forward_length") ?? 4 * embd]
        if let v = try h.int("context_length") { f["n_positions"] = v }
        if let v = try h.double("attention.layer_norm_epsilon") { f["layer_norm_epsilon"] = v }
        if let v = try h.file.int("tokenizer.ggml.bos_token_id") { f["bos_token_id"] = v }
        if let v = try h.file.int("tokenizer.ggml.eos_token_id") { f["eos_token_id"] = v }
        return f
    }

    public static func synthConfig(_ s: SynthShape) -> [String: Any] {
        let eos = s.vocab - 1
        return ["architectures": [name], "model_type": "gpt2", "vocab_size": s.vocab, "n_embd": s.hidden,
                "n_layer": s.layers, "n_head": s.heads, "n_inner": s.intermediate, "n_positions": s.maxPositions,
                "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "bos_token_id": eos, "eos_token_id": eos,
                "tie_word_embeddings": true]
    }
}
