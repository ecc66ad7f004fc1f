import Foundation

/// The sizes a tensor's shape is made of, from a config (`ModelSpec`) or a synth preset.
public struct TensorDims: Sendable, Equatable {
    public var hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, positions: Int
    /// A mixture of experts: routed experts per layer (0: dense) and each one's intermediate size.
    public var experts = 0, expertIntermediate = 0
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public init(hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, positions: Int,
                experts: Int = 0, expertIntermediate: Int = 0) {
        self.hidden = hidden; self.intermediate = intermediate; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.vocab = vocab; self.positions = positions; self.experts = experts; self.expertIntermediate = expertIntermediate
    }
    public init(_ s: ModelSpec) {
        self.init(hidden: s.hiddenSize, intermediate: s.intermediateSize, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
                  vocab: s.vocabSize, positions: s.maxPositions, experts: s.moe?.experts ?? 0, expertIntermediate: s.moe?.intermediate ?? 0)
    }
    public init(_ s: SynthShape) {
        let x = s.extraFields
        let experts = (x["num_experts"] as? Int) ?? (x["num_local_experts"] as? Int) ?? 0
        self.init(hidden: s.hidden, intermediate: s.intermediate, heads: s.heads, kvHeads: s.kvHeads,
                  headDim: (x["head_dim"] as? Int) ?? s.hidden / s.heads, vocab: s.vocab, positions: s.maxPositions,
                  experts: experts, expertIntermediate: experts > 0 ? (x["moe_intermediate_size"] as? Int) ?? s.intermediate : 0)
    }
}

/// One tensor an architecture reads (llama.cpp's `LLM_TENSOR_NAMES` and `LLM_TENSOR_INFOS` in one
/// row): its role, its Hugging Face name and llama.cpp's (for a layer's tensor the part after the
/// layer's prefix, e.g. `self_attn.q_proj` / `attn_q`; without `.weight` / `.bias`), whether it
/// is global, per layer or per routed expert, whether it has a bias, and its shape from the
/// model's sizes.
///
/// An expert's row (`.expert`) names one expert's tensor with `{e}` where the expert's index goes
/// (`mlp.experts.{e}.gate_proj`, as hub checkpoints store them); llama.cpp stores a layer's experts
/// stacked in one 3-D tensor (`ffn_gate_exps`: `[experts, rows, columns]`), whose HF name is the
/// pattern without `{e}.` (`mlp.experts.gate_proj`). Its `shape` is one expert's.
public struct TensorRow: Sendable {
    public enum Scope: Sendable { case global, layer, expert }
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
    /// HF names this tensor as a bare `nn.Parameter`: `<hf>` for the weight and `<hf>_bias` for its
    /// bias, not `<hf>.weight` / `<hf>.bias` (gpt-oss's sinks and stacked experts).
    public var parameter: Bool

    public init(_ role: TensorRole, hf: String, gguf: String?, _ scope: Scope = .layer, bias: Bias = .none, outputAxis: Int = 0,
                parameter: Bool = false, shape: @escaping @Sendable (TensorDims) -> [Int]) {
        self.role = role; self.hf = hf; self.gguf = gguf; self.scope = scope; self.bias = bias; self.outputAxis = outputAxis
        self.parameter = parameter; self.shape = shape
    }

    /// The full name of this row's `kind` ("weight" or "bias") for a name without it.
    func full(_ base: String, _ kind: String) -> String {
        parameter ? (kind == "weight" ? base : base + "_" + kind) : base + "." + kind
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
            precondition((r.scope == .expert) == r.hf.contains("{e}."), "TensorTable: \(r.hf): an expert row, and only one, names {e}")
            h[r.scope == .expert ? r.stackedHF : r.hf] = i
            ro[r.role] = i
            if let gg = r.gguf { precondition(g[gg] == nil, "TensorTable: \(gg) twice"); g[gg] = i }
        }
        byHF = h; byGGUF = g; byRole = ro
    }

    /// `name` split into (layer, row, kind) and, for one expert's tensor, the expert: nil when no
    /// row reads it. A layer's stacked experts (a GGUF's) have no expert index.
    private func lookup(_ name: String) -> (layer: Int?, row: TensorRow, kind: String, expert: Int?)? {
        if let dot = name.lastIndex(of: "."), let found = lookup(base: String(name[..<dot]), kind: String(name[name.index(after: dot)...]), parameter: false) {
            return found
        }
        // a bare parameter's name: `<base>` (its weight) or `<base>_bias`
        if name.hasSuffix("_bias") { return lookup(base: String(name.dropLast(5)), kind: "bias", parameter: true) }
        return lookup(base: name, kind: "weight", parameter: true)
    }

    private func lookup(base: String, kind: String, parameter: Bool) -> (layer: Int?, row: TensorRow, kind: String, expert: Int?)? {
        func accept(_ r: TensorRow) -> Bool { r.parameter == parameter && (kind == "weight" || (kind == "bias" && r.bias != .none)) }
        // the output head is named at the top (`lm_head`), the rest under a prefix
        if let i = byHF[base], rows[i].role == .outputHead, accept(rows[i]) { return (nil, rows[i], kind, nil) }
        for p in prefixes where base.hasPrefix(p) {
            let rest = String(base.dropFirst(p.count))
            if let i = byHF[rest], rows[i].scope == .global, rows[i].role != .outputHead, accept(rows[i]) { return (nil, rows[i], kind, nil) }
            guard let (n, suffix) = layerSuffix(rest, prefix: layerPrefix) else { continue }
            if let i = byHF[String(suffix)], rows[i].scope != .global, accept(rows[i]) { return (n, rows[i], kind, nil) }
            // one expert's tensor: the pattern's text before {e}, the index, the text after
            for r in rows where r.scope == .expert && accept(r) {
                let (head, tail) = r.expertPattern
                guard suffix.hasPrefix(head), suffix.hasSuffix(tail), suffix.count > head.count + tail.count else { continue }
                let digits = suffix.dropFirst(head.count).dropLast(tail.count)
                if digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.count <= 6, digits.first != "0" || digits.count == 1, let e = Int(digits) {
                    return (n, r, kind, e)
                }
            }
        }
        return nil
    }

    /// Where a checkpoint tensor belongs; nil for a name this table does not read.
    public func place(of name: String) -> TensorPlace? {
        lookup(name).map { TensorPlace(layer: $0.layer, role: $0.row.role, expert: $0.expert) }
    }

    /// The HF name (with the first prefix) of a checkpoint tensor's row (an expert row's: expert
    /// `expert`'s, or the stacked tensor's when nil).
    private func hfName(_ row: TensorRow, layer: Int?, kind: String, expert: Int? = nil) -> String {
        row.scope == .global ? row.full((row.role == .outputHead ? "" : prefixes[0]) + row.hf, kind)
            : row.full(prefixes[0] + layerPrefix + "\(layer!)." + row.hfName(expert: expert), kind)
    }

    /// The row of `role` (each role appears once in a table; asking for one it lacks is a
    /// programming error of the architecture's loader).
    public func row(_ role: TensorRole) -> TensorRow {
        guard let i = byRole[role] else { preconditionFailure("TensorTable: no \(role) row") }
        return rows[i]
    }

    /// The checkpoint name of `role`'s weight (or bias) in `layer`, under `prefix` (default: the
    /// first; the output head is named at the top).
    public func name(_ role: TensorRole, layer: Int? = nil, expert: Int? = nil, kind: String = "weight", prefix: String? = nil) -> String {
        let r = row(role)
        let p = prefix ?? prefixes[0]
        if r.scope == .global { return r.full((r.role == .outputHead ? "" : p) + r.hf, kind) }
        return r.full(p + layerPrefix + "\(layer ?? 0)." + r.hfName(expert: expert), kind)
    }

    /// Whether the table has a row for `role`.
    public func has(_ role: TensorRole) -> Bool { byRole[role] != nil }

    /// The HF name of llama.cpp's `gguf` name (nil: not read).
    public func hfName(gguf name: String) -> String? {
        guard let dot = name.lastIndex(of: ".") else { return nil }
        let kind = String(name[name.index(after: dot)...]), base = String(name[..<dot])
        if let i = byGGUF[base], rows[i].scope == .global, kind == "weight" || rows[i].bias != .none { return hfName(rows[i], layer: nil, kind: kind) }
        guard let (n, rest) = layerSuffix(name, prefix: "blk."), let d = rest.lastIndex(of: "."),
              let i = byGGUF[String(rest[..<d])], rows[i].scope != .global, kind == "weight" || rows[i].bias != .none else { return nil }
        return hfName(rows[i], layer: n, kind: kind)
    }

    /// llama.cpp's name of a checkpoint tensor (nil: no GGUF name).
    public func ggufName(hf name: String) -> String? {
        // one expert's tensor has no name of its own there: llama.cpp stacks a layer's experts
        guard let (layer, row, kind, expert) = lookup(name), let g = row.gguf, expert == nil else { return nil }
        return layer.map { "blk.\($0).\(g).\(kind)" } ?? "\(g).\(kind)"
    }

    /// Whether a layer of a model of sizes `d` has `row`: a mixture of experts' layers have the
    /// router and experts and no dense MLP (a model with some dense layers, as Qwen3-MoE's
    /// `mlp_only_layers`, is read, not synthesized); a dense model's have no expert rows.
    func inEveryLayer(_ r: TensorRow, _ d: TensorDims) -> Bool {
        if r.scope == .global { return false }
        let expertRow = r.scope == .expert || r.role == .router
        let denseMLP = [TensorRole.mlpGate, .mlpUp, .mlpGateUp, .mlpDown].contains(r.role) && has(.router)
        return d.experts > 0 ? !denseMLP : !expertRow
    }

    /// The tensors `synth` writes, in file order: the global rows before the first layer row,
    /// every layer (each expert's tensors in turn), the rest; the output head only when not tied.
    public func synth(_ d: TensorDims, layers: Int, tied: Bool) -> [(name: String, shape: [Int])] {
        var out: [(name: String, shape: [Int])] = []
        func add(_ r: TensorRow, _ layer: Int?, _ expert: Int? = nil) {
            if r.role == .outputHead && tied { return }
            let s = r.shape(d)
            out.append((hfName(r, layer: layer, kind: "weight", expert: expert), s))
            if r.bias == .always { out.append((hfName(r, layer: layer, kind: "bias", expert: expert), [s[r.outputAxis]])) }
        }
        let firstLayer = rows.firstIndex { $0.scope != .global } ?? rows.count
        for r in rows[..<firstLayer] where r.scope == .global { add(r, nil) }
        for l in 0..<layers {
            for r in rows where inEveryLayer(r, d) {
                if r.scope == .expert { for e in 0..<d.experts { add(r, l, e) } } else { add(r, l) }
            }
        }
        for r in rows[firstLayer...] where r.scope == .global { add(r, nil) }
        return out
    }

    /// One layer's matrix elements (weights of two dims) and vector elements (norms, biases that
    /// are always there).
    public func layerElements(_ d: TensorDims) -> (matrices: Int, vectors: Int) {
        var m = 0, v = 0
        for r in rows where inEveryLayer(r, d) {
            let s = r.shape(d), n = r.scope == .expert ? d.experts : 1
            if s.count == 2 { m += n * s[0] * s[1] } else { v += n * s.reduce(1, *) }
            if r.bias == .always { v += n * s[r.outputAxis] }
        }
        return (m, v)
    }
}

extension TensorRow {
    /// An expert row's HF name for `expert` (the stacked tensor's when nil); any other row's name.
    func hfName(expert: Int?) -> String {
        guard scope == .expert else { return hf }
        return hf.replacingOccurrences(of: "{e}.", with: expert.map { "\($0)." } ?? "")
    }
    /// The stacked name of an expert row (its pattern without `{e}.`).
    var stackedHF: String { hfName(expert: nil) }
    /// An expert row's name before and after the expert's index.
    var expertPattern: (head: String, tail: String) {
        let r = hf.range(of: "{e}")!
        return (String(hf[..<r.lowerBound]), String(hf[r.upperBound...]))
    }
}
