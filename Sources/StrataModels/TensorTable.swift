import Foundation

/// The sizes a tensor's shape is made of, from a config (`ModelSpec`) or a synth preset.
public struct TensorDims: Sendable, Equatable {
    public var hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, positions: Int
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public init(hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, positions: Int) {
        self.hidden = hidden; self.intermediate = intermediate; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.vocab = vocab; self.positions = positions
    }
    public init(_ s: ModelSpec) {
        self.init(hidden: s.hiddenSize, intermediate: s.intermediateSize, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
                  vocab: s.vocabSize, positions: s.maxPositions)
    }
    public init(_ s: SynthShape) {
        self.init(hidden: s.hidden, intermediate: s.intermediate, heads: s.heads, kvHeads: s.kvHeads,
                  headDim: (s.extraFields["head_dim"] as? Int) ?? s.hidden / s.heads, vocab: s.vocab, positions: s.maxPositions)
    }
}

/// One tensor an architecture reads (llama.cpp's `LLM_TENSOR_NAMES` and `LLM_TENSOR_INFOS` in one
/// row): its role, its Hugging Face name and llama.cpp's (for a layer's tensor the part after the
/// layer's prefix, e.g. `self_attn.q_proj` / `attn_q`; without `.weight` / `.bias`), whether it
/// is global or per layer, whether it has a bias, and its shape from the model's sizes.
public struct TensorRow: Sendable {
    public enum Scope: Sendable { case global, layer }
    public enum Bias: Sendable {
        /// weight only
        case none
        /// a bias where the config says so (Llama's `attention_bias`): read when present, not synthesized
        case optional
        /// always a bias (Qwen2's q, k, v; GPT-2)
        case always
    }
    public var role: TensorRole
    public var hf: String
    public var gguf: String?
    public var scope: Scope
    public var bias: Bias
    /// the weight's shape ([out, in] for a matrix; GPT-2's Conv1D stores [in, out])
    public var shape: @Sendable (TensorDims) -> [Int]
    /// the axis of the shape the bias runs along (1 for a Conv1D weight)
    public var outputAxis: Int

    public init(_ role: TensorRole, hf: String, gguf: String?, _ scope: Scope = .layer, bias: Bias = .none, outputAxis: Int = 0,
                shape: @escaping @Sendable (TensorDims) -> [Int]) {
        self.role = role; self.hf = hf; self.gguf = gguf; self.scope = scope; self.bias = bias; self.outputAxis = outputAxis; self.shape = shape
    }
}

/// An architecture's tensors, one row each. Every name question is answered from it: a
/// checkpoint name's place (layer and role), a GGUF name's HF name and back, the tensors `synth`
/// writes, the elements of a layer's matrices and vectors.
public struct TensorTable: Sendable {
    /// The HF prefixes of names (the first is written by synth; GPT-2's hub checkpoints use both
    /// `transformer.` and none) and of a layer's names after it (`layers.`, `h.`).
    public var prefixes: [String]
    public var layerPrefix: String
    public var rows: [TensorRow]
    private let byHF: [String: Int], byGGUF: [String: Int], byRole: [TensorRole: Int]

    public init(prefixes: [String] = ["model."], layerPrefix: String = "layers.", _ rows: [TensorRow]) {
        self.prefixes = prefixes; self.layerPrefix = layerPrefix; self.rows = rows
        var h: [String: Int] = [:], g: [String: Int] = [:], ro: [TensorRole: Int] = [:]
        for (i, r) in rows.enumerated() {
            precondition(h[r.hf] == nil && ro[r.role] == nil, "TensorTable: \(r.hf) or \(r.role) twice")
            h[r.hf] = i
            ro[r.role] = i
            if let gg = r.gguf { precondition(g[gg] == nil, "TensorTable: \(gg) twice"); g[gg] = i }
        }
        byHF = h; byGGUF = g; byRole = ro
    }

    /// `name` split into (layer, row, kind): nil when no row reads it.
    private func lookup(_ name: String) -> (layer: Int?, row: TensorRow, kind: String)? {
        guard let dot = name.lastIndex(of: ".") else { return nil }
        let kind = String(name[name.index(after: dot)...]), base = String(name[..<dot])
        func accept(_ r: TensorRow) -> Bool { kind == "weight" || (kind == "bias" && r.bias != .none) }
        // the output head is named at the top (`lm_head`), the rest under a prefix
        if let i = byHF[base], rows[i].role == .outputHead, accept(rows[i]) { return (nil, rows[i], kind) }
        for p in prefixes where base.hasPrefix(p) {
            let rest = String(base.dropFirst(p.count))
            if let i = byHF[rest], rows[i].scope == .global, rows[i].role != .outputHead, accept(rows[i]) { return (nil, rows[i], kind) }
            if let (n, suffix) = layerSuffix(rest, prefix: layerPrefix), let i = byHF[String(suffix)],
               rows[i].scope == .layer, accept(rows[i]) {
                return (n, rows[i], kind)
            }
        }
        return nil
    }

    /// Where a checkpoint tensor belongs; nil for a name this table does not read.
    public func place(of name: String) -> TensorPlace? { lookup(name).map { TensorPlace(layer: $0.layer, role: $0.row.role) } }

    /// The HF name (with the first prefix) of a checkpoint tensor's row.
    private func hfName(_ row: TensorRow, layer: Int?, kind: String) -> String {
        row.scope == .global ? (row.role == .outputHead ? "" : prefixes[0]) + row.hf + "." + kind
            : prefixes[0] + layerPrefix + "\(layer!)." + row.hf + "." + kind
    }

    /// The row of `role` (each role appears once in a table; asking for one it lacks is a
    /// programming error of the architecture's loader).
    public func row(_ role: TensorRole) -> TensorRow {
        guard let i = byRole[role] else { preconditionFailure("TensorTable: no \(role) row") }
        return rows[i]
    }

    /// The checkpoint name of `role`'s weight (or bias) in `layer`, under `prefix` (default: the
    /// first; the output head is named at the top).
    public func name(_ role: TensorRole, layer: Int? = nil, kind: String = "weight", prefix: String? = nil) -> String {
        let r = row(role)
        let p = prefix ?? prefixes[0]
        if r.scope == .global { return (r.role == .outputHead ? "" : p) + r.hf + "." + kind }
        return p + layerPrefix + "\(layer ?? 0)." + r.hf + "." + kind
    }

    /// The HF name of llama.cpp's `gguf` name (nil: not read).
    public func hfName(gguf name: String) -> String? {
        guard let dot = name.lastIndex(of: ".") else { return nil }
        let kind = String(name[name.index(after: dot)...]), base = String(name[..<dot])
        if let i = byGGUF[base], rows[i].scope == .global, kind == "weight" || rows[i].bias != .none { return hfName(rows[i], layer: nil, kind: kind) }
        guard let (n, rest) = layerSuffix(name, prefix: "blk."), let d = rest.lastIndex(of: "."),
              let i = byGGUF[String(rest[..<d])], rows[i].scope == .layer, kind == "weight" || rows[i].bias != .none else { return nil }
        return hfName(rows[i], layer: n, kind: kind)
    }

    /// llama.cpp's name of a checkpoint tensor (nil: no GGUF name).
    public func ggufName(hf name: String) -> String? {
        guard let (layer, row, kind) = lookup(name), let g = row.gguf else { return nil }
        return layer.map { "blk.\($0).\(g).\(kind)" } ?? "\(g).\(kind)"
    }

    /// The tensors `synth` writes, in file order: the global rows before the first layer row,
    /// every layer, the rest; the output head only when not tied.
    public func synth(_ d: TensorDims, layers: Int, tied: Bool) -> [(name: String, shape: [Int])] {
        var out: [(name: String, shape: [Int])] = []
        func add(_ r: TensorRow, _ layer: Int?) {
            if r.role == .outputHead && tied { return }
            let s = r.shape(d)
            out.append((hfName(r, layer: layer, kind: "weight"), s))
            if r.bias == .always { out.append((hfName(r, layer: layer, kind: "bias"), [s[r.outputAxis]])) }
        }
        let firstLayer = rows.firstIndex { $0.scope == .layer } ?? rows.count
        for r in rows[..<firstLayer] where r.scope == .global { add(r, nil) }
        for l in 0..<layers { for r in rows where r.scope == .layer { add(r, l) } }
        for r in rows[firstLayer...] where r.scope == .global { add(r, nil) }
        return out
    }

    /// One layer's matrix elements (weights of two dims) and vector elements (norms, biases that
    /// are always there).
    public func layerElements(_ d: TensorDims) -> (matrices: Int, vectors: Int) {
        var m = 0, v = 0
        for r in rows where r.scope == .layer {
            let s = r.shape(d)
            if s.count == 2 { m += s[0] * s[1] } else { v += s.reduce(1, *) }
            if r.bias == .always { v += s[r.outputAxis] }
        }
        return (m, v)
    }
}
