import Foundation
import StrataFormats
import StrataTensor

/// What writing a model folder as GGUF needs from its architecture (`strata quantize`): the
/// `general.architecture` name, the hyperparameter keys, and the converter's transformations
/// (Llama's Q/K rows permuted into RoPE's interleaved layout; Llama 3's frequency scaling as a
/// `rope_freqs.weight` tensor). Written as llama.cpp's convert_hf_to_gguf.py writes them, so
/// llama.cpp and Strata's own reader (`GGUFModel`) read the file.
public struct GGUFExport {
    public var architecture: String
    public var metadata: [(String, GGUFValue)]
    /// Permute q_proj / k_proj rows per head (heads, kv heads), as the converter does for Llama.
    public var permuteQK: (heads: Int, kvHeads: Int)?
    /// Extra f32 tensors (llama.cpp name, values).
    public var extraTensors: [(String, [Float])]

    /// The converter's permutation of one projection's rows: within each head, HF's half-split
    /// row `i` goes to `2i` and row `i + half` to `2i + 1`. Returns the source row of each output row.
    public static func permutedRows(rows: Int, heads: Int) -> [Int] {
        let hd = rows / heads, half = hd / 2
        var src = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for i in 0..<half {
                src[h * hd + 2 * i] = h * hd + i
                src[h * hd + 2 * i + 1] = h * hd + half + i
            }
        }
        return src
    }
}

extension Architecture {
    /// The llama.cpp name of an HF tensor name (the table's); nil for a name the architecture does not map.
    public static func ggufName(hf name: String) -> String? { tensors.ggufName(hf: name) }

    /// Default: the architecture cannot be written as GGUF yet.
    public static func ggufExport(config: ConfigFile) throws -> GGUFExport? { nil }
}

extension LlamaFamilyConfig {
    /// The GGUF metadata of a Llama-family config under `arch` (llama, qwen2, qwen3).
    func ggufExport(arch: String, permute: Bool) -> GGUFExport {
        let p = arch + "."
        var m: [(String, GGUFValue)] = [
            (p + "context_length", .u32(UInt32(clamping: maxPositions))), (p + "embedding_length", .u32(UInt32(clamping: hiddenSize))),
            (p + "block_count", .u32(UInt32(clamping: layers))), (p + "feed_forward_length", .u32(UInt32(clamping: intermediateSize))),
            (p + "attention.head_count", .u32(UInt32(clamping: heads))), (p + "attention.head_count_kv", .u32(UInt32(clamping: kvHeads))),
            (p + "rope.freq_base", .f32(Float(rope.theta))), (p + "attention.layer_norm_rms_epsilon", .f32(Float(rmsNormEps))),
            (p + "rope.dimension_count", .u32(UInt32(clamping: rotaryDim))), (p + "vocab_size", .u32(UInt32(clamping: vocabSize))),
        ]
        if headDim != hiddenSize / heads {
            m += [(p + "attention.key_length", .u32(UInt32(clamping: headDim))), (p + "attention.value_length", .u32(UInt32(clamping: headDim)))]
        }
        var extra: [(String, [Float])] = []
        switch rope.kind {
        case let .linear(f):
            m += [(p + "rope.scaling.type", .string("linear")), (p + "rope.scaling.factor", .f32(Float(f)))]
        case .llama3:
            // per-frequency divisors, as the converter computes them
            let base = RoPE(headDim: headDim, rotaryDim: rotaryDim, theta: Float(rope.theta))
            let scaled = RoPE(headDim: headDim, rotaryDim: rotaryDim, theta: Float(rope.theta), scaling: ropeScaling)
            extra.append(("rope_freqs.weight", zip(base.invFreq, scaled.invFreq).map { $0 / $1 }))
        case let .yarn(f, orig, fast, slow, _, attention, _, _):
            // the converter's keys (whether the correction range is rounded is the reader's: llama.cpp rounds it)
            m += [(p + "rope.scaling.type", .string("yarn")), (p + "rope.scaling.factor", .f32(Float(f))),
                  (p + "rope.scaling.original_context_length", .u32(UInt32(clamping: orig))),
                  (p + "rope.scaling.yarn_beta_fast", .f32(Float(fast))), (p + "rope.scaling.yarn_beta_slow", .f32(Float(slow)))]
            if let attention { m.append((p + "rope.scaling.yarn_attn_factor", .f32(Float(attention)))) }
        default:
            break
        }
        if let x = moe?.shape {
            // llama.cpp's keys of a mixture (its qwen3moe and llama readers)
            m += [(p + "expert_count", .u32(UInt32(clamping: x.experts))), (p + "expert_used_count", .u32(UInt32(clamping: x.expertsPerToken)))]
            m.append((p + "expert_feed_forward_length", .u32(UInt32(clamping: x.intermediate))))
        }
        return GGUFExport(architecture: arch, metadata: m, permuteQK: permute ? (heads, kvHeads) : nil, extraTensors: extra)
    }
}

/// A `tokenizer.json` (and tokenizer_config.json's chat template) as `tokenizer.ggml.*`
/// metadata, the inverse of `GGUFTokenizer`: byte-level BPE as `gpt2` (tokens, merges, the
/// pre-tokenizer named by its split regex), SentencePiece-style BPE with byte fallback as `llama`
/// (tokens with scores: a merged piece scores minus its first merge's rank, so merging by highest
/// score is merging by rank).
public enum GGUFTokenizerExport {
    /// `vocabSize`: the embedding's rows; the token list is padded to it with `[PADi]` tokens of
    /// type unused, as llama.cpp's converter pads it (its reader sizes the vocabulary by the list).
    public static func metadata(directory: String, bos: [Int], eos: [Int], vocabSize: Int) throws -> [(String, GGUFValue)] {
        let path = (directory as NSString).appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let root = try Tokenizer.folderRoot(directory: directory)
        guard let model = root["model"] as? [String: Any], (model["type"] as? String ?? "BPE") == "BPE",
              let vocab = model["vocab"] as? [String: Int] else {
            throw TokenizerError.malformed(file: path, field: "model", reason: "a BPE model with a vocab is needed to write GGUF")
        }
        let added = (root["added_tokens"] as? [[String: Any]]) ?? []
        var byID: [Int: String] = [:]
        for (t, i) in vocab { byID[i] = t }
        var types: [Int: GGUFTokenizer.TokenType] = [:]
        for a in added {
            guard let id = a["id"] as? Int, let content = a["content"] as? String else { continue }
            byID[id] = content
            types[id] = (a["special"] as? Bool ?? false) ? .control : .userDefined
        }
        let n = max((byID.keys.max() ?? -1) + 1, vocabSize)
        var tokens: [GGUFValue] = [], tokenTypes: [GGUFValue] = []
        let unk = (model["unk_token"] as? String).flatMap { vocab[$0] }
        for i in 0..<n {
            guard let t = byID[i] else {
                tokens.append(.string("[PAD\(i)]")); tokenTypes.append(.i32(Int32(GGUFTokenizer.TokenType.unused.rawValue))); continue
            }
            tokens.append(.string(t))
            var ty = types[i] ?? .normal
            if ty == .normal && i == unk { ty = .unknown }
            if ty == .normal && t.count == 6 && t.hasPrefix("<0x") && t.hasSuffix(">") && (model["byte_fallback"] as? Bool ?? false) { ty = .byte }
            tokenTypes.append(.i32(Int32(ty.rawValue)))
        }
        let merges: [String] = ((model["merges"] as? [Any]) ?? []).compactMap {
            if let s = $0 as? String { return s }
            if let a = $0 as? [String], a.count == 2 { return a[0] + " " + a[1] }
            return nil
        }
        var m: [(String, GGUFValue)] = []
        if model["byte_fallback"] as? Bool ?? false {
            // SentencePiece style: scores from merge ranks
            var score = [Float](repeating: -1e9, count: n)
            for (rank, mg) in merges.enumerated().reversed() {
                if let id = vocab[mg.replacingOccurrences(of: " ", with: "")] { score[id] = -Float(rank) }
            }
            for (t, i) in vocab where t.count == 1 { score[i] = 0 }
            let prepends = String(describing: root["normalizer"] ?? "").contains("Prepend")
                || ((root["pre_tokenizer"] as? [String: Any])?["prepend_scheme"] as? String).map { $0 != "never" } ?? false
            m += [("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.pre", .string("default")),
                  ("tokenizer.ggml.tokens", .array(.string, tokens)), ("tokenizer.ggml.scores", .array(.f32, score.map { .f32($0) })),
                  ("tokenizer.ggml.token_type", .array(.i32, tokenTypes)), ("tokenizer.ggml.add_space_prefix", .bool(prepends))]
            if let unk { m.append(("tokenizer.ggml.unknown_token_id", .u32(UInt32(unk)))) }
        } else {
            let pre = try preTokenizerName(root["pre_tokenizer"], file: path)
            m += [("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(pre)),
                  ("tokenizer.ggml.tokens", .array(.string, tokens)), ("tokenizer.ggml.token_type", .array(.i32, tokenTypes)),
                  ("tokenizer.ggml.merges", .array(.string, merges.map { .string($0) }))]
        }
        // ids outside the vocabulary (config.json of tiny test checkpoints) are not written: GGUF readers refuse them
        if let b = bos.first, b >= 0, b < n { m.append(("tokenizer.ggml.bos_token_id", .u32(UInt32(b)))) }
        if let e = eos.first, e >= 0, e < n { m.append(("tokenizer.ggml.eos_token_id", .u32(UInt32(e)))) }
        m.append(("tokenizer.ggml.add_bos_token", .bool(addsBOS(root["post_processor"]))))
        if let t = try chatTemplate(directory: directory) { m.append(("tokenizer.chat_template", .string(t))) }
        return m
    }

    /// The llama.cpp pre-tokenizer name of a byte-level tokenizer's pre-tokenizer: its Split
    /// regex is one llama.cpp names, or it is a ByteLevel with GPT-2's regex.
    static func preTokenizerName(_ pre: Any?, file: String) throws -> String {
        func parts(_ a: Any?) -> [[String: Any]] {
            guard let o = a as? [String: Any] else { return [] }
            if o["type"] as? String == "Sequence" { return ((o["pretokenizers"] as? [Any]) ?? []).flatMap { parts($0) } }
            return [o]
        }
        for o in parts(pre) {
            if o["type"] as? String == "Split", let r = (o["pattern"] as? [String: Any])?["Regex"] as? String,
               let name = GGUFTokenizer.preTokenizerPatterns.first(where: { $0.value == r })?.key {
                return name
            }
            if o["type"] as? String == "ByteLevel", o["use_regex"] as? Bool ?? true { return "gpt-2" }
        }
        throw TokenizerError.unsupported(file: file, field: "pre_tokenizer", type: "a split regex llama.cpp does not name (supported: llama-bpe, qwen2, gpt-2)")
    }

    /// Whether the post-processor puts a special token before the sequence (BOS).
    static func addsBOS(_ post: Any?) -> Bool {
        guard let o = post as? [String: Any] else { return false }
        if o["type"] as? String == "Sequence" { return ((o["processors"] as? [Any]) ?? []).contains { addsBOS($0) } }
        guard o["type"] as? String == "TemplateProcessing", let single = o["single"] as? [[String: Any]], let first = single.first else { return false }
        return first["SpecialToken"] != nil
    }

    /// The folder's chat template (ModelFolder's own lookup: chat_template.jinja, else
    /// tokenizer_config.json's default template).
    static func chatTemplate(directory: String) throws -> String? {
        try ModelFolder.templateSource(directory: directory, name: nil)?.source
    }
}
